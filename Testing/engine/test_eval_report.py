"""Smoke test of the evaluation report (benchmarks/eval_report.py) and the baseline on a tiny phantom model.

The numbers are meaningless (a model trained for a few iterations); what is checked is the machinery:
ensemble sizes are prefixes of one run, reliability counts cover every brain voxel, the grid's
default cell reproduces the full-volume run, and the report holds every configured row and figure.
"""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import eval_report
from benchmarks.baseline_unet import load_baseline, main as baseline_main, segment_baseline
from DiffSegExtension.data.loading import load_case

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on 2 shared cores a second thread waits at every barrier for a busy core (≈40× slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def baseline_dir(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("baseline") / "run"
    assert baseline_main(["--split-from", str(tiny_run), "--out", str(out), "--iterations", "2", "--batch-size", "2",
                          "--crop", "32", "--device", "cpu", "--no-evaluate"]) == 0
    return out


def test_baseline_copies_the_split_and_budget(tiny_run, baseline_dir, phantom_cases):
    card = json.loads((baseline_dir / "baseline.json").read_text())
    trained = json.loads((tiny_run / "model.json").read_text())
    assert card["data"]["train"] == trained["data"]["train"]
    assert card["data"]["validation"] == trained["data"]["validation"]
    assert card["modalities"] == trained["modalities"]
    assert card["training"]["iteration"] == 2 and card["training"]["seconds"] > 0
    assert card["training"]["options"]["tumour_fraction"] == trained["training"]["options"]["tumour_fraction"]
    assert (baseline_dir / "weights.safetensors").read_bytes()[:2] != b"PK"  # safetensors, not a torch.save zip
    baseline = load_baseline(baseline_dir)
    case = load_case(phantom_cases / "phantom3", baseline.modalities, with_label=True)
    out = segment_baseline(baseline, case, device="cpu")
    assert out["probability"].shape == case.shape and out["mask"].shape == case.shape
    assert out["probability"].min() >= 0.0 and out["probability"].max() <= 1.0
    assert not out["mask"][~out["brain"]].any(), "no tumour outside the brain"


def test_quick_report_has_every_section_row_and_figure(tiny_run, phantom_cases, baseline_dir, tmp_path):
    out = tmp_path / "docs"
    argv = ["--model", str(tiny_run), "--out", str(out), "--quick", "--stride", "4", "--ddpm1000-slices", "1",
            "--baseline", str(baseline_dir), "--msd4", str(tiny_run), "--msd4-data", str(phantom_cases / "phantom2"),
            "--device", "cpu"]
    results = eval_report.main(argv)
    text = (out / "results.md").read_text()
    assert json.loads((out / "results.json").read_text())["command"] == argv
    assert f"Command: `python benchmarks/eval_report.py --model {tiny_run}" in text.splitlines()[2]
    assert "QUICK SMOKE RUN" in text

    settings, sizes = results["settings"], results["sizes"]
    assert sorted(int(k) for k in sizes) == sorted(settings["sizes"])
    seconds = [sizes[str(k)][0]["seconds"] for k in sorted(settings["sizes"])]
    assert seconds == sorted(seconds), "k members cost at least what fewer members cost (cumulative chunks)"
    for k in settings["sizes"]:
        row = sizes[str(k)][0]
        assert row["members"] == k and row["passes_per_slice"] == k * settings["steps"]
        assert f"\n| {k} | {k * settings['steps']} | " in text
    assert sizes["1"][0]["auroc_uncertainty_error"] == 0.5, "one member has no uncertainty: chance AUROC"

    # Reliability bins cover every brain voxel of every evaluated case, once.
    assert sum(results["reliability"]["count"]) == sum(results["brain_voxels"].values()) > 0

    grid = results["grid"]
    assert len(grid) == len(settings["grid_samplers"]) * len(settings["grid_steps"])
    for r in grid:
        assert f"| {r['sampler']} | {r['steps']} | {r['members']} | {r['passes_per_slice']} |" in text
        assert r["seconds_per_slice"] > 0
    default = [r for r in grid if (r["sampler"], r["steps"]) == (settings["sampler"], settings["steps"])]
    assert default and default[0]["matches_full_volume"] is True

    cases = [r["case"] for r in sizes["1"]]
    assert cases == json.loads((tiny_run / "model.json").read_text())["data"]["validation"]
    for case in cases:
        assert f"| {case} | " in text
    assert [r["case"] for r in results["reference"]] == cases
    assert all(len(r["slices"]) == 1 for r in results["reference"])
    assert [r["case"] for r in results["baseline"]] == cases
    assert "## 6. Diffusion model vs deterministic baseline" in text and "wins** on mean Dice" in text
    assert "Thin data" in text and "| phantom2 | " in text
    for target in results["targets"]:
        assert target["target"] in text
    assert all(t["met"] is not None for t in results["targets"][-1:]), "baseline target is decided when one is given"

    for name in ("dice_vs_passes", "ensemble_size", "reliability", "example_case", "worst_case", "msd4_slices"):
        assert f"(figures/{name}.png)" in text
        assert (out / "figures" / f"{name}.png").read_bytes()[:8] == PNG_MAGIC
