"""Simulated clicks for guided training: where they fall, what they say, how they nest, and replay."""

import numpy as np
import pytest
import torch

from DiffSegExtension.config import PreprocessConfig, preset
from DiffSegExtension.data import click_simulation
from DiffSegExtension.data.click_simulation import DRAWS, simulate_known
from DiffSegExtension.data.phantom import make_phantom
from DiffSegExtension.data.training_data import SliceDataset
from DiffSegExtension.network import condition_input

FOUR = ("flair", "t1", "t1ce", "t2")
REGIONS = ("wt", "tc", "et")
PRE = PreprocessConfig(train_crop=32)


def nested_labels(slices: int = 7, tumour: tuple[int, int] = (2, 5)) -> tuple[torch.Tensor, torch.Tensor]:
    """Slices 1 mm apart of 40 × 40 px, all brain: WT a 16 px square, TC its 8 px centre, ET a 4 px centre,
    on slices tumour[0] … tumour[1] − 1."""
    labels = torch.zeros((slices, 3, 40, 40), dtype=torch.uint8)
    for r, half in enumerate((8, 4, 2)):
        labels[tumour[0]:tumour[1], r, 20 - half:20 + half, 20 - half:20 + half] = 1
    return labels, torch.ones((slices, 40, 40), dtype=torch.bool)


def draws(kind: float, region: float, depth: float = 0.5, pick: float = 0.5, clicks: int = 1) -> list[float]:
    u = [(clicks - 0.5) / click_simulation.MAX_CLICKS] + [0.0] * (DRAWS - 1)
    for k in range(clicks):
        u[1 + 4 * k:5 + 4 * k] = [kind, region, depth, pick]
    return u


def test_an_include_click_marks_a_ball_inside_its_region_and_every_outer_one():
    labels, brains = nested_labels()
    known = simulate_known(labels, brains, 3, [float(k) for k in range(7)], (1.0, 1.0), [0, 1, 2],
                           draws(kind=0.0, region=0.99))  # include, region ET, the slice itself
    assert known.shape == (3, 40, 40) and known.dtype == torch.int8
    marked = known[2] == 1
    assert marked.any() and bool((labels[3, 2][marked.nonzero()[:, 0].median(), marked.nonzero()[:, 1].median()]) == 1)
    assert torch.equal(known[0] == 1, marked) and torch.equal(known[1] == 1, marked)  # ET ⇒ TC ⇒ WT
    assert not (known < 0).any()
    # a 3 mm ball at 1 mm pixels: the disk of radius 3 around the pixel (29 pixels)
    assert int(marked.sum()) == 29


def test_exclude_clicks_fall_near_the_tumour_and_say_not_inside():
    labels, brains = nested_labels()
    for pick in np.linspace(0.0, 0.999, 9):
        known = simulate_known(labels, brains, 3, [float(k) for k in range(7)], (1.0, 1.0), [0, 1, 2],
                               draws(kind=0.9, region=0.0, pick=float(pick)))  # exclude WT
        assert (known == -1).any() and not (known == 1).any()
        assert torch.equal(known[0], known[2])  # not tumour = in no region
        centre = (known[0] == -1).nonzero().float().mean(0)
        assert labels[3, 0][tuple(centre.round().long())] == 0
        distance = (centre - 19.5).abs().max()  # from the square's centre
        assert distance <= 8 + click_simulation.EXCLUDE_RING_MM + 1


def test_whole_balls_stay_on_their_side_of_the_border_in_3d_where_there_is_room():
    labels, brains = nested_labels(13, (2, 11))
    positions = [float(k) for k in range(13)]
    for s in range(13):
        for depth in np.linspace(0.0, 0.999, 7):
            for pick in np.linspace(0.0, 0.999, 7):
                out = simulate_known(labels, brains, s, positions, (1.0, 1.0), [0],
                                     draws(kind=0.9, region=0.0, depth=float(depth), pick=float(pick)))
                assert not ((out[0] == -1) & (labels[s, 0] > 0)).any()  # no exclude ball touches the tumour
                if 2 <= s < 11:  # (near its ends the tumour is too thin to hold a whole ball)
                    into = simulate_known(labels, brains, s, positions, (1.0, 1.0), [0],
                                          draws(kind=0.0, region=0.0, depth=float(depth), pick=float(pick)))
                    assert not ((into[0] == 1) & (labels[s, 0] == 0)).any()


def test_excluding_an_inner_region_keeps_the_outer_one_open():
    labels, brains = nested_labels()
    known = simulate_known(labels, brains, 3, [float(k) for k in range(7)], (1.0, 1.0), [0, 1, 2],
                           draws(kind=0.9, region=0.5))  # exclude TC: a voxel of WT outside TC
    assert (known[1] == -1).any() and torch.equal(known[1], known[2])
    assert not known[0].any()


def test_a_click_on_a_neighbouring_slice_shows_as_a_smaller_disk_and_far_slices_see_none():
    labels, brains = nested_labels()
    positions = [float(k) for k in range(7)]
    sizes = {}
    for depth in np.linspace(0.0, 0.999, 7):
        known = simulate_known(labels, brains, 3, positions, (1.0, 1.0), [0], draws(kind=0.0, region=0.0, depth=depth))
        sizes[round(float(depth), 2)] = int((known[0] == 1).sum())
    assert max(sizes.values()) == 29 and min(sizes.values()) < 29  # off-slice clicks: smaller disks
    # 5 mm slices: the ball never reaches the next slice, so every click lies on the slice itself
    far = [simulate_known(labels, brains, 3, [5.0 * k for k in range(7)], (1.0, 1.0), [0],
                          draws(kind=0.0, region=0.0, depth=d)) for d in (0.0, 0.999)]
    assert all(int((k[0] == 1).sum()) == 29 for k in far)


def test_clicks_only_for_annotated_regions_and_none_without_tumour():
    labels, brains = nested_labels()
    wt_only = simulate_known(labels, brains, 3, [float(k) for k in range(7)], (1.0, 1.0), [0],
                             draws(kind=0.0, region=0.99, clicks=3))
    assert (wt_only[0] == 1).any() and not wt_only[1:].any()
    empty = simulate_known(labels, brains, 0, [10.0 * k for k in range(7)], (1.0, 1.0), [0, 1, 2],
                           draws(kind=0.0, region=0.0))  # include on a tumour-free slice: skipped
    assert not empty.any()


@pytest.fixture(scope="module")
def region_dataset() -> SliceDataset:
    cases = [make_phantom(seed, shape=(48, 56, 20), spacing=(1.0, 1.0, 2.0), modalities=FOUR).to_case(f"c{seed}")
             for seed in (5, 6)]
    return SliceDataset(cases, FOUR, PRE, 16, regions=REGIONS, optional=("t1", "t1ce", "t2"))


def test_batches_carry_hints_on_the_asked_share_and_replay_bit_for_bit(region_dataset):
    plain = region_dataset.sample_batch(torch.Generator().manual_seed(3), 32, crop=32)
    assert plain.known is None
    hinted = region_dataset.sample_batch(torch.Generator().manual_seed(3), 32, crop=32, hint_rate=0.5)
    again = region_dataset.sample_batch(torch.Generator().manual_seed(3), 32, crop=32, hint_rate=0.5)
    assert hinted.known.shape == (32, 3, 32, 32) and torch.equal(hinted.known, again.known)
    with_hints = hinted.known.flatten(1).any(1)
    assert 4 <= int(with_hints.sum()) <= 28  # about half the items
    inside = hinted.known == 1
    truth = hinted.masks > 0
    # include hints lie in the tumour (a 3 mm ball may overhang a small inner region, not the whole tumour)
    assert (inside[:, 0] & truth[:, 0]).sum() > 0.8 * inside[:, 0].sum()
    assert (hinted.known == -1).any()
    assert bool((inside[:, 1] <= inside[:, 0]).all() and (inside[:, 2] <= inside[:, 1]).all())
    none = region_dataset.sample_batch(torch.Generator().manual_seed(3), 32, crop=32, hint_rate=0.0)
    assert not none.known.any()


def test_hint_planes_follow_the_regions_in_the_condition():
    net = preset("tiny", FOUR, regions=REGIONS, optional_modalities=("t1", "t1ce", "t2"), guidance=True).network
    assert net.hint_channels == 6 and net.in_channels == 4 + 3 + 6 + 3
    images, known = torch.rand(2, 4, 16, 16), torch.zeros(2, 3, 16, 16)
    known[0, :2, 3, 4], known[1, 1:, 5, 6] = 1, -1
    x = condition_input(net, images, known=known)
    assert x.shape == (2, 13, 16, 16)
    assert torch.equal(x[:, 7:10], (known > 0).float()) and torch.equal(x[:, 10:13], (known < 0).float())
    assert not condition_input(net, images)[:, 7:].any()  # no guidance: empty planes
    with pytest.raises(ValueError, match="no hint planes"):
        condition_input(preset("tiny", ["flair"]).network, images[:, :1], known=known[:, :1])
