"""The adaptive ensemble: every member only near the tumour member 0 finds (inference/adaptive.py)."""

import json

import numpy as np
import pytest
import torch

from DiffSegExtension.cli import main
from DiffSegExtension.data.loading import load_case
from DiffSegExtension.data.phantom import make_phantom, write_phantom_case
from DiffSegExtension.data.preparation import prepare_volume
from DiffSegExtension.diffusion.schedule import NoiseSchedule
from DiffSegExtension.inference.adaptive import AdaptiveSettings, candidate_slices, sample_adaptive, tumour_window
from DiffSegExtension.inference.ensemble_sampling import sample_ensemble
from DiffSegExtension.model_card import load_model
from DiffSegExtension.network import condition_input


def test_candidates_are_the_tumour_slices_and_their_neighbours():
    screen = torch.zeros(10, 4, 4, dtype=torch.bool)
    screen[3, 1, 1] = screen[8, 2, 2] = True
    assert candidate_slices(screen, 1).nonzero()[:, 0].tolist() == [2, 3, 4, 7, 8, 9]
    assert candidate_slices(screen, 0).nonzero()[:, 0].tolist() == [3, 8]
    assert not candidate_slices(torch.zeros(5, 4, 4, dtype=torch.bool), 2).any()


def test_window_covers_the_tumour_with_its_margin_and_fits_the_network():
    screen = torch.zeros(3, 160, 192, dtype=torch.bool)
    screen[0, 150:158, 5:9] = True    # near the bottom-left corner
    screen[2, 140:145, 20:60] = True
    top, bottom, left, right = tumour_window(screen, AdaptiveSettings(pixel_margin=8, min_window=64), multiple=32)
    assert (bottom - top) % 32 == 0 and (right - left) % 32 == 0
    assert 0 <= top and bottom <= 160 and 0 <= left and right <= 192, "shifted inside the slice"
    assert top <= 140 - 8 and bottom == 160 and left == 0 and right >= 60 + 8
    assert bottom - top == 64, "at least min_window, no larger than needed"
    whole = tumour_window(screen, AdaptiveSettings(min_window=400), multiple=32)
    assert whole == (0, 160, 0, 192), "a window larger than the slice is the slice"
    with pytest.raises(ValueError):
        tumour_window(torch.zeros(2, 8, 8, dtype=torch.bool), AdaptiveSettings(), 8)


@pytest.fixture(scope="module")
def phantom_slices(tmp_path_factory):
    """The bundled phantom model and one phantom volume prepared for it (80 × 80 slices)."""
    model = load_model("phantom")
    root = tmp_path_factory.mktemp("adaptive")
    write_phantom_case(root, "wide", make_phantom(5, shape=(112, 112, 20), oblique=True))
    case = load_case(root / "wide", model.modalities, with_label=True)
    net = model.config.network
    prepared = prepare_volume(case, model.modalities, model.config.preprocess, net.size_multiple)
    condition = condition_input(net, prepared.images, torch.ones(len(prepared), len(net.modalities), dtype=torch.bool))
    return model, prepared, condition


def _run(model, prepared, condition, settings, members=4):
    """(full ensemble, adaptive ensemble, its work): dpmpp 3 steps, ``members`` members."""
    common = dict(members=members, sampler="dpmpp", steps=3, seed=3, batch_size=16)
    schedule = NoiseSchedule.from_config(model.config.diffusion)
    full = sample_ensemble(model.network, schedule, condition, prepared.source_slices, **common)
    adaptive, work = sample_adaptive(model.network, schedule, condition, prepared.brain, prepared.source_slices,
                                     size_multiple=model.config.network.size_multiple, settings=settings, **common)
    return full, adaptive, work


def test_with_whole_slice_windows_the_candidates_equal_the_full_ensemble(phantom_slices, one_torch_thread):
    model, prepared, condition = phantom_slices
    full, adaptive, work = _run(model, prepared, condition, AdaptiveSettings(slice_margin=1, min_window=10_000))
    assert 0 < work.candidates < len(prepared), "the phantom's tumour spans some slices, not all"
    assert work.window_fraction() == 1.0
    chosen = sorted(work.windows)
    assert torch.equal(adaptive[:, chosen], full[:, chosen])
    others = [s for s in range(len(prepared)) if s not in work.windows]
    assert torch.equal(adaptive[0], full[0]), "member 0 is the full ensemble's member 0"
    assert not (adaptive[:, others].bool() & prepared.brain[others][None, :, None]).any()
    assert work.full_slice_passes(3) == 3 * (len(prepared) + 3 * work.candidates)


def test_a_separate_cheaper_screen_only_chooses_where_every_member_is_sampled(phantom_slices, one_torch_thread):
    model, prepared, condition = phantom_slices
    full, adaptive, work = _run(model, prepared, condition, AdaptiveSettings(slice_margin=1, min_window=10_000,
                                                                             screen_steps=1))
    assert work.screen_steps == 1 and work.windowed_members == 4
    assert 0 < work.candidates < len(prepared)
    chosen = sorted(work.windows)
    assert torch.equal(adaptive[:, chosen], full[:, chosen]), "every member, 0 too, is sampled on the candidates"
    others = [s for s in range(len(prepared)) if s not in work.windows]
    assert not adaptive[:, others].any()
    assert work.full_slice_passes(3) == len(prepared) + 3 * 4 * work.candidates


def test_small_windows_sample_each_candidate_inside_its_own_window(phantom_slices, one_torch_thread):
    """Windows smaller than the slice: members 1… are the same samples as a run on the window alone, pasted
    at the window's place, and background outside it. (Whether windows keep the segmentation is a matter
    of the model's training crop: measured on real data by benchmarks/bench_speed.py.)"""
    model, prepared, condition = phantom_slices
    settings = AdaptiveSettings(slice_margin=1, pixel_margin=6, min_window=48)
    _, adaptive, work = _run(model, prepared, condition, settings)
    assert work.window_fraction() < 0.5, "the windows are smaller than the slices"
    assert len({(b - t, r - l) for t, b, l, r in work.windows.values()}) >= 1
    schedule = NoiseSchedule.from_config(model.config.diffusion)
    for s, (top, bottom, left, right) in list(work.windows.items())[::3]:
        alone = sample_ensemble(model.network, schedule, condition[s:s + 1, :, top:bottom, left:right],
                                [prepared.source_slices[s]], members=3, first_member=1, sampler="dpmpp", steps=3,
                                seed=3, batch_size=16)
        assert torch.equal(adaptive[1:, s, :, top:bottom, left:right], alone[:, 0])
        outside = torch.ones(prepared.images.shape[2:], dtype=torch.bool)
        outside[top:bottom, left:right] = False
        assert not adaptive[1:, s, :, outside].any(), "members 1… are background outside their window"


def test_segment_adaptive_records_its_plan_and_saves_work(tmp_path, one_torch_thread):
    write_phantom_case(tmp_path, "case", make_phantom(2, shape=(96, 96, 24), oblique=True))
    summaries = {}
    for ensemble in ("full", "adaptive"):
        out = tmp_path / ensemble
        assert main(["segment", "--model", "phantom", "--input", str(tmp_path / "case"), "--out", str(out),
                     "--ensemble", ensemble, "--steps", "3", "--members", "3", "--progress", "none"]) == 0
        summaries[ensemble] = json.loads((out / "summary.json").read_text())
    full, adaptive = summaries["full"], summaries["adaptive"]
    assert full["passes_per_slice"] == 9 and "adaptive" not in full
    assert full["options"]["ensemble"] == "full" and adaptive["options"]["ensemble"] == "adaptive"
    assert 3 <= adaptive["passes_per_slice"] < 9
    assert 0 < adaptive["adaptive"]["candidate_slices"] < adaptive["slices_sampled"]
    assert abs(adaptive["regions"]["wt"]["voxels"] - full["regions"]["wt"]["voxels"]) <= 0.1 * full["regions"]["wt"]["voxels"]
    assert np.isfinite(adaptive["seconds"])
