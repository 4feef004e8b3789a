"""The deterministic region baseline (benchmarks/baseline_unet.py, baseline_model.py) on a tiny region model.

Checked: the split, inputs, regions and budget are those of the diffusion model it copies; the loss
ignores regions an item's label does not annotate; MC-dropout outputs are per region, nested, zero
outside the brain, seeded, and scored by the engine's ``case_metrics``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmarks.baseline_model import load_baseline, matched_passes, segment_baseline
from benchmarks.baseline_unet import main as baseline_main, region_loss
from DiffSegExtension.data.loading import load_case
from DiffSegExtension.evaluation.evaluate import case_metrics
from DiffSegExtension.model_card import load_model


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def region_baseline(tiny_region_run, tmp_path_factory):
    """A baseline trained with the tiny region model's whole budget (no override)."""
    out = tmp_path_factory.mktemp("baseline") / "regions"
    assert baseline_main(["--split-from", str(tiny_region_run), "--out", str(out), "--device", "cpu"]) == 0
    return out


def test_baseline_copies_split_inputs_regions_and_budget(tiny_region_run, region_baseline):
    card = json.loads((region_baseline / "baseline.json").read_text())
    diffusion = json.loads((tiny_region_run / "model.json").read_text())
    for key in ("train", "validation", "roots"):
        assert card["data"][key] == diffusion["data"][key]
    assert card["config"] == diffusion["config"]
    assert card["regions"] == ["wt", "tc", "et"] and card["optional_modalities"] == ["t1ce", "t2"]
    assert card["network"]["in_channels"] == 3 + 2, "three sequences + two presence planes (condition_input)"
    assert card["network"]["out_channels"] == 3
    copied, planned = card["training"]["options"], diffusion["training"]["options"]
    for key in ("iterations", "batch_size", "crop", "lr", "warmup", "weight_decay", "grad_clip", "tumour_fraction",
                "modality_dropout", "seed"):
        assert copied[key] == planned[key], key
    assert card["training"]["iteration"] == planned["iterations"] == 4 and card["training"]["seconds"] > 0
    assert (region_baseline / "weights.safetensors").read_bytes()[:2] != b"PK"  # safetensors, not a torch.save zip


def test_region_loss_ignores_regions_an_item_does_not_annotate():
    from monai.losses import DiceCELoss

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 3, 8, 8, generator=g)
    target = (torch.rand(4, 3, 8, 8, generator=g) > 0.5).float()
    weights = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    loss_fn = DiceCELoss(sigmoid=True, batch=True)
    before = region_loss(logits, target, weights, loss_fn)
    changed = target.clone()
    changed[1, 1:] = 1.0 - changed[1, 1:]  # item 1 is whole-tumour only: its TC / ET targets are not used
    assert torch.equal(region_loss(logits, changed, weights, loss_fn), before)
    changed[1, 0] = 1.0 - changed[1, 0]  # but its WT target is
    assert not torch.equal(region_loss(logits, changed, weights, loss_fn), before)
    only_wt = region_loss(logits, target, torch.tensor([[1.0, 0.0, 0.0]] * 4), loss_fn)
    assert torch.allclose(only_wt, loss_fn(logits[:, :1], target[:, :1]))


def test_mc_dropout_segmentation_is_nested_seeded_and_scored_by_the_engine(region_baseline, phantom_cases):
    baseline = load_baseline(region_baseline)
    case = load_case(phantom_cases / "phantom3", baseline.modalities, with_label=True)
    seg = segment_baseline(baseline, case, passes=4, seed=1, device="cpu")
    assert seg.probability.shape == seg.uncertainty.shape == seg.mask.shape == (3, *case.shape)
    assert seg.regions == ("wt", "tc", "et") and seg.options.members == 4
    assert (seg.probability[0] >= seg.probability[1]).all() and (seg.probability[1] >= seg.probability[2]).all()
    assert (seg.mask[0] >= seg.mask[1]).all() and (seg.mask[1] >= seg.mask[2]).all()
    assert set(np.unique(seg.label_map)) <= {0, 1, 2, 4}
    brain = seg.prepared.restore(seg.prepared.brain.float()) > 0.5
    assert seg.uncertainty[:, brain].max() > 0, "dropout stays on: the passes differ"
    assert not seg.probability[:, ~brain].any() and not seg.uncertainty[:, ~brain].any()
    assert np.all(seg.uncertainty <= 0.25 + 1e-6) and np.all((seg.entropy >= 0) & (seg.entropy <= 1 + 1e-6))
    again = segment_baseline(baseline, case, passes=4, seed=1, device="cpu")
    assert np.array_equal(again.probability, seg.probability), "same seed, same dropout masks"
    rows = case_metrics(seg, case)
    assert [r["region"] for r in rows] == ["wt", "tc", "et"]
    assert all(r["passes_per_slice"] == 4 for r in rows)


def test_matched_passes_spend_the_ensembles_flops(tiny_region_run, region_baseline):
    from benchmarks.baseline_model import baseline_flops
    from DiffSegExtension.network import count_flops

    model, baseline = load_model(tiny_region_run), load_baseline(region_baseline)
    matched = matched_passes(model.network, baseline, 50)
    expected = round(50 * count_flops(model.network, 128, 128) / baseline_flops(baseline))
    assert matched["passes"] == max(1, expected)
    assert matched["passes"] * matched["baseline_gflop_per_pass"] == pytest.approx(
        50 * matched["diffusion_gflop_per_pass"], rel=0.5 / matched["passes"] + 1e-9)
