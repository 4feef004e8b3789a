"""Guidance → known voxels: RAS points through oblique affines, nesting, accumulation; the sampler hook."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from DiffSegExtension.config import DiffusionConfig, PreprocessConfig
from DiffSegExtension.data.phantom import make_phantom
from DiffSegExtension.data.preparation import prepare_volume
from DiffSegExtension.diffusion.sampling import sample_generators, sample_masks
from DiffSegExtension.diffusion.samplers import make_sampler
from DiffSegExtension.diffusion.schedule import NoiseSchedule
from DiffSegExtension.errors import DiffSegInputError
from DiffSegExtension.inference.ensemble_sampling import sample_ensemble
from DiffSegExtension.refinement.guidance import Guidance, Point, parse_point, point_ball, voxel_of


def test_point_ball_follows_an_oblique_affine(oblique_affine):
    affine = oblique_affine(spacing=(0.9, 1.1, 2.5), axes=(1, 0, 2), flips=(-1, 1, 1))
    shape = (40, 36, 16)
    voxel = np.array([20, 11, 7])
    ras = (affine @ np.append(voxel, 1.0))[:3]
    assert np.allclose(voxel_of(ras, affine), voxel)
    ball = point_ball(Point("include", tuple(ras), radius_mm=3.0), affine, shape)
    hits = np.argwhere(ball)
    world = (affine[:3, :3] @ hits.T).T + affine[:3, 3]
    assert np.all(np.linalg.norm(world - ras, axis=1) <= 3.0 + 1e-9), "every ball voxel within the radius (mm)"
    grid = np.indices(shape).reshape(3, -1)
    distances = np.linalg.norm((affine[:3, :3] @ grid).T + affine[:3, 3] - ras, axis=1)
    assert ball.sum() == (distances <= 3.0).sum(), "and every voxel within the radius is in the ball"
    assert ball[tuple(voxel)] and len(np.unique(hits[:, 2])) == 3, "a 3 mm ball reaches the 2.5 mm neighbour slices"


def test_points_outside_the_volume_and_malformed_points_are_refused(oblique_affine):
    affine = oblique_affine()
    far = tuple((affine @ np.array([-3.0, 5, 5, 1]))[:3])
    with pytest.raises(DiffSegInputError, match="lies outside the input volume"):
        point_ball(Point("exclude", far), affine, (10, 10, 10))
    for text in ("1,2", "a,b,c", "1,2,nan"):
        with pytest.raises(DiffSegInputError, match="give X,Y,Z in RAS millimetres"):
            parse_point(text, "include")
    assert parse_point("-12.5,3,4e1", "include") == (-12.5, 3.0, 40.0)


def test_known_voxels_keep_regions_nested_and_later_guidance_wins():
    affine, shape, regions = np.eye(4), (9, 9, 9), ("wt", "tc", "et")
    strokes = np.zeros(shape, np.uint8)
    strokes[0, 0, 0], strokes[8, 8, 8] = 1, 2
    first = Guidance([Point("include", (4.0, 4.0, 4.0), "tc", 1.0)], {"tc": strokes})
    known = first.known(affine, shape, regions)
    assert list(known[:, 4, 4, 4]) == [1, 1, 0] and list(known[:, 4, 4, 6]) == [0, 0, 0]
    assert list(known[:, 0, 0, 0]) == [1, 1, 0], "inside TC means inside WT too"
    assert list(known[:, 8, 8, 8]) == [0, -1, -1], "not TC means not ET either; WT stays open"
    paint = np.zeros(shape, np.uint8)
    paint[8, 8, 8] = 1
    both = first.merged(Guidance([Point("exclude", (4.0, 4.0, 4.0), radius_mm=1.0)], {"tc": paint}))
    known = both.known(affine, shape, regions)
    assert list(known[:, 4, 4, 4]) == [-1, -1, -1], "a later exclude overrides an earlier include"
    assert list(known[:, 8, 8, 8]) == [1, 1, 0] and list(known[:, 0, 0, 0]) == [1, 1, 0], "newer paint over older"
    assert len(both.points) == 2 and first.strokes["tc"][8, 8, 8] == 2, "merging copies"


def test_to_slices_is_the_forward_counterpart_of_restore():
    phantom = make_phantom(3, shape=(48, 40, 20), spacing=(0.8, 1.3, 2.0), oblique=True)
    case = phantom.to_case()
    prepared = prepare_volume(case, ["flair"], PreprocessConfig(), 8)
    assert prepared.resampled
    assert torch.equal((prepared.to_slices(case.label) >= 0.5).to(torch.uint8), prepared.label)
    part = prepared.select([1, 3])
    assert part.source_slices == [prepared.source_slices[1], prepared.source_slices[3]]
    assert torch.equal(part.images, prepared.images[[1, 3]]) and torch.equal(part.brain, prepared.brain[[1, 3]])


class _Smooth(torch.nn.Module):
    """A fixed random conv net: an imperfect denoiser with ε and variance outputs for R regions."""

    def __init__(self, regions: int):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(1 + regions, 2 * regions, 3, padding=1)

    def forward(self, x, t):
        return self.conv(x)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpmpp"])
def test_known_voxels_are_exact_in_every_member_and_a_row_without_any_is_unchanged(sampler):
    schedule = NoiseSchedule.from_config(DiffusionConfig())
    condition = torch.rand(3, 1, 16, 16)
    mask = torch.zeros(3, 2, 16, 16, dtype=torch.bool)
    mask[0, 0, 4:9, 4:9] = mask[1, :, 10:, :3] = True
    values = torch.where(torch.rand(3, 2, 16, 16) > 0.5, 1.0, -1.0)
    net = _Smooth(2)
    members = sample_ensemble(net, schedule, condition, [5, 6, 7], members=2, sampler=sampler, steps=3, seed=1,
                              batch_size=4, regions=2, known=(values, mask))
    truth = (values > 0).to(torch.uint8).expand(2, -1, -1, -1, -1)
    assert torch.equal(members[:, mask], truth[:, mask])
    free = sample_ensemble(net, schedule, condition, [5, 6, 7], members=2, sampler=sampler, steps=3, seed=1,
                           batch_size=4, regions=2)
    assert torch.equal(members[:, 2], free[:, 2]), "slice 7 has no known voxel: sampled as without guidance"
    assert not torch.equal(members[:, 0], free[:, 0])
    run = make_sampler(sampler, schedule, 3)
    plain = sample_masks(net, condition, run, sample_generators(1, [(5, 0), (6, 0), (7, 0)]), regions=2)
    run = make_sampler(sampler, schedule, 3)
    empty = (values, torch.zeros_like(mask))
    hooked = sample_masks(net, condition, run, sample_generators(1, [(5, 0), (6, 0), (7, 0)]), regions=2, known=empty)
    assert torch.equal(plain, hooked), "an empty mask changes nothing"
