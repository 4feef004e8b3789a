"""Volume → prepared slices → back: geometry exactness, slice selection by the affine, resampling accuracy."""

import nibabel as nib
import numpy as np
import pytest
import torch

from DiffSegExtension.config import PreprocessConfig
from DiffSegExtension.data.loading import Case, load_case
from DiffSegExtension.data.normalise import foreground_mask, normalise
from DiffSegExtension.data.phantom import make_phantom
from DiffSegExtension.data.preparation import prepare_volume
from DiffSegExtension.errors import DiffSegInputError

MODS = ["flair", "t1ce"]
ONE_MM = PreprocessConfig(pixel_spacing_mm=1.0)


def make_case(images: dict[str, np.ndarray], label: np.ndarray | None, affine: np.ndarray, name="synthetic") -> Case:
    first = next(iter(images.values()))
    return Case(name=name, images=images, label=label, reference=nib.Nifti1Image(first, affine))


def reslice(case: Case, order: tuple[int, int, int], flip_axis: int | None = None) -> Case:
    """The same object stored with permuted (and optionally one flipped) voxel axes: affine adjusted."""
    affine = case.affine.copy()
    affine[:, :3] = affine[:, list(order)]
    arrays = {m: v.transpose(order) for m, v in case.images.items()}
    label = case.label.transpose(order)
    if flip_axis is not None:
        n = arrays[MODS[0]].shape[flip_axis]
        affine[:3, 3] += affine[:3, flip_axis] * (n - 1)
        affine[:3, flip_axis] *= -1
        arrays = {m: np.flip(v, flip_axis).copy() for m, v in arrays.items()}
        label = np.flip(label, flip_axis).copy()
    return make_case(arrays, label, affine, case.name)


def world_centroid(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return affine[:3, :3] @ np.argwhere(mask).mean(axis=0) + affine[:3, 3]


@pytest.fixture(scope="module")
def phantom_case() -> Case:
    """Oblique phantom, 1 mm in plane, 2 mm slices."""
    return make_phantom(11, shape=(64, 72, 28), spacing=(1.0, 1.0, 2.0), oblique=True,
                        modalities=MODS).to_case("ph11")


def normalised(case: Case, modality: str) -> np.ndarray:
    volume = case.images[modality]
    return normalise(volume, foreground_mask(volume))


def test_round_trip_without_resampling_is_exact(phantom_case):
    prepared = prepare_volume(phantom_case, MODS, ONE_MM, size_multiple=16)
    axis, selected = prepared.frame.slice_axis, prepared.source_slices
    assert not prepared.resampled and prepared.pixel_spacing == pytest.approx((1.0, 1.0))
    assert prepared.images.dtype == torch.float32 and prepared.images.shape[:2] == (len(selected), 2)
    assert all(n % 16 == 0 for n in prepared.images.shape[2:])
    unselected = sorted(set(range(phantom_case.shape[axis])) - set(selected))
    assert unselected, "the phantom must have slices without brain"
    for m, modality in enumerate(MODS):
        restored = prepared.restore(prepared.images[:, m])
        assert restored.shape == phantom_case.shape and restored.dtype == np.float32
        expected = normalised(phantom_case, modality)
        assert np.array_equal(np.take(restored, selected, axis), np.take(expected, selected, axis))
        filled = prepared.restore(prepared.images[:, m], fill=-1.0)
        assert np.all(np.take(filled, unselected, axis) == -1.0)
        outside_box = np.take(filled, selected, axis) == -1.0
        assert outside_box.any() and np.all(np.take(expected, selected, axis)[outside_box] == 0.0)
    label = prepared.restore(prepared.label)
    assert np.array_equal(np.take(label, selected, axis), np.take(phantom_case.label, selected, axis))
    # Nothing of the brain was cropped away.
    brain = foreground_mask(phantom_case.images["flair"]) | foreground_mask(phantom_case.images["t1ce"])
    assert int(prepared.brain.sum()) == int(np.take(brain, selected, axis).sum())


@pytest.mark.parametrize("order, flip_axis", [((2, 1, 0), None), ((1, 2, 0), 1), ((0, 1, 2), 2)])
def test_storage_order_does_not_change_the_prepared_slices(phantom_case, order, flip_axis):
    """Sagittal-stored (SI = voxel axis 0), coronal-stored and SI-flipped copies of one volume prepare identically."""
    reference = prepare_volume(phantom_case, MODS, ONE_MM, size_multiple=16)
    other_case = reslice(phantom_case, order, flip_axis)
    other = prepare_volume(other_case, MODS, ONE_MM, size_multiple=16)
    assert torch.equal(other.images, reference.images) and torch.equal(other.label, reference.label)
    si_axis = int(np.argmax(np.abs(other_case.affine[2, :3])))
    assert other.frame.slice_axis == si_axis == order.index(reference.frame.slice_axis)
    n = phantom_case.shape[reference.frame.slice_axis]
    expected = [n - 1 - k for k in reference.source_slices] if flip_axis == si_axis else reference.source_slices
    assert other.source_slices == expected
    restored = other.restore(other.label)
    assert np.array_equal(np.take(restored, other.source_slices, si_axis),
                          np.take(other_case.label, other.source_slices, si_axis))


def test_slice_range_is_in_source_indices(phantom_case):
    flipped = reslice(phantom_case, (0, 1, 2), flip_axis=2)  # voxel axis 2 now runs superior → inferior
    full = prepare_volume(flipped, MODS, ONE_MM, 16)
    assert full.source_slices == sorted(full.source_slices, reverse=True)  # canonical order is inferior → superior
    start, stop = sorted(full.source_slices)[3], sorted(full.source_slices)[9]
    part = prepare_volume(flipped, MODS, ONE_MM, 16, slice_range=(start, stop))
    assert sorted(part.source_slices) == list(range(start, stop))
    brain = foreground_mask(flipped.images["flair"]) | foreground_mask(flipped.images["t1ce"])
    for s, source in enumerate(part.source_slices):
        assert int(part.brain[s].sum()) == int(brain[:, :, source].sum())


def test_empty_selection_says_where_the_brain_is(phantom_case):
    full = prepare_volume(phantom_case, MODS, ONE_MM, 16)
    first, last = min(full.source_slices), max(full.source_slices)
    message = rf"slice range \[0, {first}\) .* the brain is in slices {first}–{last}"
    with pytest.raises(DiffSegInputError, match=message):
        prepare_volume(phantom_case, MODS, ONE_MM, 16, slice_range=(0, first))
    with pytest.raises(DiffSegInputError, match=r"slice range \[9, 9\) is empty"):
        prepare_volume(phantom_case, MODS, ONE_MM, 16, slice_range=(9, 9))


def test_min_brain_pixels_drops_slices(phantom_case):
    few = prepare_volume(phantom_case, MODS, ONE_MM, 16, min_brain_pixels=1500)
    all_ = prepare_volume(phantom_case, MODS, ONE_MM, 16, min_brain_pixels=1)
    assert set(few.source_slices) < set(all_.source_slices)
    assert int(few.brain.flatten(1).sum(1).min()) >= 1500


def test_other_errors(phantom_case):
    with pytest.raises(DiffSegInputError, match=r"case ph11 has no t2 image \(it has flair, t1ce\)"):
        prepare_volume(phantom_case, ["flair", "t2"], ONE_MM, 16)
    prepared = prepare_volume(phantom_case, MODS, ONE_MM, 16)
    with pytest.raises(DiffSegInputError, match="do not match the prepared slices"):
        prepared.restore(np.zeros((len(prepared), 8, 8)))


@pytest.fixture(scope="module")
def fine_case(oblique_affine) -> Case:
    """0.5 mm in-plane oblique volume: a smooth field in an ellipsoidal brain and a large sharp object."""
    shape = (168, 150, 10)
    affine = oblique_affine(spacing=(0.5, 0.5, 3.0), degrees=(14.0, -9.0), centre=(83.5, 74.5, 4.5), origin=(5, -8, 20))
    world = (affine[:3, :3] @ np.indices(shape, dtype=float).reshape(3, -1) + affine[:3, 3:4]).reshape(3, *shape)
    x, y, z = world - np.array([5.0, -8.0, 20.0])[:, None, None, None]
    brain = (x / 36) ** 2 + (y / 33) ** 2 + (z / 40) ** 2 < 1.0
    field = 600 + 150 * np.sin(x / 7.0) * np.cos(y / 9.0) + 2.0 * y
    obj = ((x - 9.0) / 15.0) ** 2 + ((y + 6.0) / 12.0) ** 2 < 1.0
    image = np.where(brain, field, 0.0).astype(np.float32)
    ramp = np.where(brain, 1000.0 + 10.0 * x + 4.0 * y, 0.0).astype(np.float32)
    return make_case({"flair": image, "t1": ramp}, (obj & brain).astype(np.uint8), affine)


def interior_of(mask: np.ndarray, pixels: int) -> np.ndarray:
    """``mask`` eroded in-plane (axes 0, 1) by ``pixels``."""
    inner = mask.copy()
    for _ in range(pixels):
        inner[1:-1, 1:-1] &= inner[:-2, 1:-1] & inner[2:, 1:-1] & inner[1:-1, :-2] & inner[1:-1, 2:]
        inner[[0, -1]] = False
        inner[:, [0, -1]] = False
    return inner


def test_resampled_round_trip_is_accurate_and_unbiased(fine_case):
    prepared = prepare_volume(fine_case, ["flair"], ONE_MM, size_multiple=16)
    assert prepared.resampled and prepared.pixel_spacing == pytest.approx((1.0, 1.0), rel=0.01)
    assert prepared.images.shape[2] < fine_case.shape[0] / 2 + 16  # half the pixels (+ box/padding)
    axis, selected = prepared.frame.slice_axis, prepared.source_slices
    expected = np.take(normalised(fine_case, "flair"), selected, axis)
    restored = np.take(prepared.restore(prepared.images[:, 0]), selected, axis)
    # 2 mm away from the brain edge, where the 1 mm pixels mix brain and background.
    interior = interior_of(np.take(foreground_mask(fine_case.images["flair"]), selected, axis), 4)
    error = np.abs(restored - expected)[interior]
    assert error.mean() < 0.01 and np.percentile(error, 99) < 0.05

    obj = np.take(fine_case.label, selected, axis).astype(bool)
    back = np.take(prepared.restore(prepared.label), selected, axis) >= 0.5
    assert 2 * (back & obj).sum() / (back.sum() + obj.sum()) >= 0.98
    shift = world_centroid(back, fine_case.affine) - world_centroid(obj, fine_case.affine)
    assert np.linalg.norm(shift) < 0.1  # no half-pixel bias


def test_resampling_keeps_pixel_centres_aligned(fine_case):
    """Linear interpolation reproduces a linear ramp exactly, so any misalignment of pixel centres
    between the forward and backward resampling shows up as an error."""
    prepared = prepare_volume(fine_case, ["t1"], ONE_MM, size_multiple=16)
    axis, selected = prepared.frame.slice_axis, prepared.source_slices
    expected = np.take(normalised(fine_case, "t1"), selected, axis)
    restored = np.take(prepared.restore(prepared.images[:, 0]), selected, axis)
    inside = interior_of(np.take(fine_case.images["t1"] > 0, selected, axis), 6)
    inside &= interior_of((expected > 0.0) & (expected < 1.0), 6)  # away from the percentile clipping too
    assert inside.sum() > 10000
    assert np.abs(restored - expected)[inside].max() < 1e-4


def test_nan_fill_stays_outside_the_box(fine_case):
    prepared = prepare_volume(fine_case, ["flair"], ONE_MM, size_multiple=1, margin=0)  # brain touches the box
    restored = prepared.restore(prepared.images[:, 0], fill=np.nan)
    axis, selected = prepared.frame.slice_axis, prepared.source_slices
    unselected = sorted(set(range(fine_case.shape[axis])) - set(selected))
    assert np.isnan(np.take(restored, unselected, axis)).all()
    on_selected = np.take(restored, selected, axis)
    brain = np.take(fine_case.images["flair"] > 0, selected, axis)
    assert not np.isnan(on_selected[brain]).any() and np.isnan(on_selected).any()
    with_zero = np.take(prepared.restore(prepared.images[:, 0], fill=0.0), selected, axis)
    assert np.array_equal(with_zero[brain], on_selected[brain])


@pytest.mark.parametrize("resampled", [False, True])
def test_several_maps_restore_as_each_alone(phantom_case, fine_case, resampled):
    case = fine_case if resampled else phantom_case
    prepared = prepare_volume(case, ["flair"], ONE_MM, size_multiple=16)
    assert prepared.resampled == resampled
    maps = torch.stack([prepared.images[:, 0], prepared.label.float(), 1 - prepared.images[:, 0]], dim=1)
    together = prepared.restore(maps, fill=np.nan)
    assert together.shape == (3, *case.shape) and together.dtype == np.float32
    for c in range(3):
        assert np.array_equal(together[c], prepared.restore(maps[:, c], fill=np.nan), equal_nan=True)
    with pytest.raises(DiffSegInputError, match="do not match the prepared slices"):
        prepared.restore(maps[:-1])


@pytest.mark.parametrize("order, flip_axis, resampled", [((0, 1, 2), None, False), ((2, 1, 0), 0, False),
                                                         ((1, 2, 0), 1, False), ((0, 1, 2), 2, True)])
def test_a_slab_restores_into_a_volume_as_the_whole_restore_does(phantom_case, fine_case, order, flip_axis, resampled):
    """Some slices (given out of order) written into existing volumes: those slices as :meth:`restore` makes them,
    with the slice axis stored first, last or flipped; every other voxel untouched."""
    case = reslice(fine_case if resampled else phantom_case, order, flip_axis)
    everything = prepare_volume(case, ["flair"], ONE_MM, size_multiple=16)
    assert everything.resampled == resampled
    some = everything.select([len(everything) - 2, 0, len(everything) // 2])
    maps = torch.stack([some.images[:, 0], some.label.float()], dim=1)  # (S, 2, H, W)
    volumes = np.full((2, *case.shape), 7.0, dtype=np.float32)
    some.restore_slab(volumes, maps)
    whole = some.restore(maps)
    axis = some.frame.slice_axis
    inside = np.zeros(case.shape[axis], dtype=bool)
    inside[some.source_slices] = True
    assert np.array_equal(np.compress(inside, volumes, axis + 1), np.compress(inside, whole, axis + 1))
    assert np.all(np.compress(~inside, volumes, axis + 1) == 7.0)
    assert np.compress(inside, whole, axis + 1).any(), "the slab holds something to compare"


@pytest.mark.parametrize("resampled", [False, True])
def test_keeping_some_slices_prepares_them_as_the_whole_volume_does(phantom_case, fine_case, resampled):
    case = fine_case if resampled else phantom_case
    everything = prepare_volume(case, ["flair"], ONE_MM, size_multiple=16)
    positions = [1, len(everything) // 2, len(everything) - 1]
    wanted = [everything.source_slices[i] for i in positions]
    kept = prepare_volume(case, ["flair"], ONE_MM, size_multiple=16, keep=[*wanted, -5, 10_000])  # others: ignored
    alone = everything.select(positions)
    assert kept.source_slices == alone.source_slices
    for name in ("images", "brain", "region_label"):
        assert torch.equal(getattr(kept, name), getattr(alone, name)), name
    assert np.array_equal(kept.restore(kept.images[:, 0]), alone.restore(alone.images[:, 0]))
    unselected = sorted(set(range(case.shape[kept.frame.slice_axis])) - set(everything.source_slices))
    with pytest.raises(DiffSegInputError, match="hold no brain"):
        prepare_volume(case, ["flair"], ONE_MM, size_multiple=16, keep=unselected[:1] or [-5])


def test_coarse_volume_is_upsampled(fine_case):
    prepared = prepare_volume(fine_case, ["flair"], PreprocessConfig(pixel_spacing_mm=0.25), size_multiple=32)
    assert prepared.pixel_spacing == pytest.approx((0.25, 0.25), rel=0.01)
    assert all(n % 32 == 0 for n in prepared.images.shape[2:])
    back = prepared.restore(prepared.label) >= 0.5
    obj = fine_case.label.astype(bool)
    assert 2 * (back & obj).sum() / (back.sum() + obj.sum()) >= 0.98


def test_seed_2d_slice(shared_data):
    folder = shared_data / "brats2020_slices_seed_layout" / "training" / "000004"
    case = load_case(folder, ["t1", "t1ce", "t2", "flair"], with_label=True, allow_2d=True)
    prepared = prepare_volume(case, ["t1", "t1ce", "t2", "flair"], PreprocessConfig(), size_multiple=32)
    assert prepared.source_slices == [0] and prepared.images.shape[:2] == (1, 4)
    assert prepared.label.any() and prepared.images.max() == 1.0
    assert prepared.restore(prepared.images[:, 3]).shape == (240, 240, 1)


def test_msd_patch(shared_data):
    case = load_case(shared_data / "msd_patches_4mod" / "MSD_BRATS_009_patch07", ["t2", "flair"], with_label=True)
    prepared = prepare_volume(case, ["t2", "flair"], PreprocessConfig(), size_multiple=16)
    assert prepared.frame.slice_axis == 2 and prepared.source_slices == list(range(16))
    assert np.array_equal(prepared.restore(prepared.label), case.label)
