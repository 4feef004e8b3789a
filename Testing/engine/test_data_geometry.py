"""Exact reorientation into the canonical (axial-slice) frame."""

import numpy as np
import pytest

from DiffSegExtension.data.geometry import CanonicalFrame
from DiffSegExtension.errors import DiffSegInputError

SHAPE = (7, 9, 11)
# (world axis of voxel axis i, flips): axial LPS/RAS/LPI, coronal, sagittal acquisitions.
LAYOUTS = {
    "LPS": ((0, 1, 2), (-1, -1, 1)),
    "RAS": ((0, 1, 2), (1, 1, 1)),
    "RAI": ((0, 1, 2), (1, 1, -1)),
    "coronal": ((0, 2, 1), (1, -1, 1)),
    "sagittal_SI_first": ((2, 1, 0), (-1, 1, -1)),
}


@pytest.fixture(params=sorted(LAYOUTS))
def frame(request, oblique_affine) -> CanonicalFrame:
    axes, flips = LAYOUTS[request.param]
    return CanonicalFrame(oblique_affine(spacing=(0.9, 1.1, 2.5), axes=axes, flips=flips), SHAPE)


def test_round_trip_is_exact(frame):
    volume = np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)
    canonical = frame.to_canonical(volume)
    assert canonical.shape == frame.canonical_shape
    assert np.array_equal(frame.from_canonical(canonical), volume)
    stacked = np.stack([volume, -volume], axis=-1)  # trailing channel axes ride along
    assert np.array_equal(frame.from_canonical(frame.to_canonical(stacked)), stacked)


def test_every_voxel_keeps_its_world_position(frame):
    ids = np.arange(np.prod(SHAPE)).reshape(SHAPE)
    canonical = frame.to_canonical(ids)
    for value in [0, 5, 123, ids.size - 1]:
        source_index = np.argwhere(ids == value)[0]
        canonical_index = np.argwhere(canonical == value)[0]
        assert np.allclose(frame.affine @ [*source_index, 1], frame.canonical_affine @ [*canonical_index, 1])


def test_canonical_axes_point_left_posterior_superior(frame):
    directions = frame.canonical_affine[:3, :3] / np.array(frame.canonical_spacing)
    # LPS in RAS coordinates: axis 0 → −R, axis 1 → −A, axis 2 → +S (each the dominant component).
    for axis, (world, sign) in enumerate([(0, -1), (1, -1), (2, 1)]):
        assert np.argmax(np.abs(directions[:, axis])) == world
        assert np.sign(directions[world, axis]) == sign


def test_spacing_and_slice_axis_follow_the_affine(frame):
    source_spacing = np.linalg.norm(frame.affine[:3, :3], axis=0)
    assert frame.canonical_spacing[2] == pytest.approx(source_spacing[frame.slice_axis])
    assert sorted(frame.canonical_spacing) == pytest.approx(sorted(source_spacing))
    superior = np.argmax(np.abs(frame.affine[2, :3]))
    assert frame.slice_axis == superior


def test_canonical_slice_maps_to_its_source_slice(frame):
    ids = np.arange(np.prod(SHAPE)).reshape(SHAPE)
    canonical = frame.to_canonical(ids)
    n = frame.canonical_shape[2]
    for k in range(n):
        source = frame.canonical_slice_to_source(k)
        assert set(canonical[:, :, k].ravel()) == set(np.take(ids, source, axis=frame.slice_axis).ravel())
    z = [(frame.affine @ [*np.argwhere(ids == canonical[0, 0, k])[0], 1])[2] for k in range(n)]
    assert np.all(np.diff(z) > 0)  # canonical slices run inferior → superior


def test_sagittal_volume_slices_along_voxel_axis_0(oblique_affine):
    frame = CanonicalFrame(oblique_affine(axes=(2, 1, 0), flips=(-1, 1, 1)), SHAPE)
    assert frame.slice_axis == 0 and frame.canonical_shape == (11, 9, 7)
    assert frame.canonical_slice_to_source(0) == 6  # voxel axis 0 points inferior: flipped
    with pytest.raises(IndexError):
        frame.canonical_slice_to_source(7)


def test_other_target_orientation(oblique_affine):
    frame = CanonicalFrame(oblique_affine(flips=(-1, -1, 1)), SHAPE, orientation="ras")
    assert frame.orientation == "RAS"
    directions = frame.canonical_affine[:3, :3]
    assert directions[0, 0] > 0 and directions[1, 1] > 0 and directions[2, 2] > 0


@pytest.mark.parametrize("code, message", [("LPA", "one from each"), ("SLP", "must end with S or I"), ("LP", "three")])
def test_bad_orientation(code, message):
    with pytest.raises(DiffSegInputError, match=message):
        CanonicalFrame(np.eye(4), SHAPE, orientation=code)


def test_array_of_the_wrong_shape(frame):
    with pytest.raises(DiffSegInputError, match="does not match the source grid"):
        frame.to_canonical(np.zeros((3, 3, 3)))
