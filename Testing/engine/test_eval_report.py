"""The evaluation report (benchmarks/eval_report.py) on tiny phantom models, region and whole-tumour.

The numbers are meaningless (models trained for a few iterations); what is checked is the machinery:
ensemble sizes are prefixes of one run and equal smaller runs, subset rows see only their sequences,
the QU-BraTS columns are proper, the baseline spends the ensemble's FLOPs, and the report holds every
section, row and figure and no absolute path.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import eval_report
from benchmarks.baseline_unet import main as baseline_main
from benchmarks.evaluation.cases import (REPO, restrict_label, sequence_subsets, shown_argv, shown_path, slice_subset,
                                         with_modalities)
from benchmarks.evaluation.measure import Settings, prepare_for, subset_rows
from benchmarks.evaluation.sections import compute_text
from DiffSegExtension.data.loading import load_case
from DiffSegExtension.evaluation.evaluate import case_metrics
from DiffSegExtension.inference.segment import SegmentOptions, segment_case
from DiffSegExtension.model_card import load_model
from testing_utils import engine_env

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CASES = ["phantom2", "phantom3"]
#: An absolute path: a slash right after a start, space, quote, backtick or parenthesis, then a name and a slash.
ABSOLUTE = re.compile(r"(?:^|[\s`'\"(\[])/[\w.-]+/")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def region_report(tiny_region_run, tiny_run, tmp_path_factory):
    """A quick report of the region model with a baseline and a 'FLAIR-only' model (tiny_run reads FLAIR + T1ce)."""
    baseline = tmp_path_factory.mktemp("baseline") / "regions"
    assert baseline_main(["--split-from", str(tiny_region_run), "--out", str(baseline), "--device", "cpu"]) == 0
    out = tmp_path_factory.mktemp("report") / "docs"
    argv = ["--model", str(tiny_region_run), "--cases", *CASES, "--out", str(out), "--quick", "--subset-stride", "3",
            "--baseline", str(baseline), "--flair-model", str(tiny_run), "--device", "cpu",
            "--cache", str(out.parent / "cache")]
    results = eval_report.main(argv)
    return {"argv": argv, "out": out, "results": results, "text": (out / "results.md").read_text()}


def test_report_has_every_section_row_and_figure(region_report):
    results, text, out = region_report["results"], region_report["text"], region_report["out"]
    assert "QUICK SMOKE RUN" in text and json.loads((out / "results.json").read_text())["targets"] == results["targets"]
    for heading in ("## Targets of issue 8", "## 1. Split and data", "## 2. Full-volume validation",
                    "## 3. Ensemble size", "## 4. Available sequences (one brain slice in 3)", "## 5. FLAIR alone",
                    "## 6. Deterministic baseline", "## 7. Worst case",
                    "## 8. Clinician-guided refinement (robot user)\n\nNot run", "## 9. How to reproduce"):
        assert heading in text
    for region in ("WT (whole tumour)", "TC (tumour core)", "ET (enhancing tumour)"):
        assert text.count(f"**{region}**") == 2, "one per-case table for the ensemble, one for the baseline"
    for case in CASES:
        assert text.count(f"| {case} | ") == 2 * 3 + 1, "3 regions × (ensemble, baseline) + the FLAIR table"
    sizes = results["settings"]["sizes"]
    for k in sizes:
        for region in ("WT", "TC", "ET"):
            assert f"\n| {k} | {k * results['settings']['steps']} | {region} | " in text
    for subset in ("flair", "flair+t1ce", "flair+t2", "flair+t1ce+t2"):
        for method in ("diffusion", "baseline"):
            assert f"\n| {subset} | {method} | " in text
    for target in results["targets"]:
        assert f"| {target['target']} | {target['measured']} | " in text
    decided = {t["target"]: t["met"] for t in results["targets"]}
    assert decided["QU-BraTS score higher than the baseline's for every region"] is not None
    assert "one brain slice in 3" in next(t["measured"] for t in results["targets"] if t["target"].startswith("FLAIR"))
    for name in ("ensemble_size", "sequence_subsets", "worst_case"):
        assert f"(figures/{name}.png)" in text
        assert (out / "figures" / f"{name}.png").read_bytes()[:8] == PNG_MAGIC


def test_an_interrupted_report_resumes_from_its_finished_steps(region_report):
    """Run again with the same cache: every step comes back from disk (same rows, same figure slice) and the
    report says so; with another seed nothing is reused."""
    first, argv = region_report["results"], region_report["argv"]
    assert first["steps"]["from_cache"] == [] and len(first["steps"]["measured"]) == 2 + 2 + len(first["subsets"]) * 2 + 2
    again = eval_report.main([*argv, "--out", str(region_report["out"].parent / "again")])
    assert sorted(again["steps"]["from_cache"]) == sorted(first["steps"]["measured"]) and again["steps"]["measured"] == []
    for key in ("sizes", "subsets", "baseline", "flair", "targets", "worst_case"):
        assert json.dumps(again[key], default=str) == json.dumps(first[key], default=str), key
    text = (region_report["out"].parent / "again" / "results.md").read_text()
    assert f"all {len(first['steps']['measured'])} steps (a case's full volume" in text
    assert "from earlier, interrupted runs of the same command" in text
    reseeded = eval_report.main([*argv, "--out", str(region_report["out"].parent / "seed1"), "--seed", "1",
                                 "--subset-stride", "9"])
    assert reseeded["steps"]["from_cache"] == []


def test_a_robot_user_run_becomes_section_8(region_report, tiny_region_run, phantom_cases, tmp_path):
    """The curve, table and targets of a real `benchmarks/robot_user.py` run become §8 of the report."""
    robot = tmp_path / "robot"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "robot_user.py"), "--model", str(tiny_region_run),
                           "--data", str(phantom_cases), "--cases", "phantom3", "--out", str(robot), "--clicks", "1",
                           "--members", "2", "--steps", "2"], env=engine_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    out = tmp_path / "docs"
    results = eval_report.main([*region_report["argv"], "--out", str(out), "--robot-user", str(robot)])
    saved = json.loads((robot / "robot_user.json").read_text())
    assert results["robot_user"]["targets"] == saved["targets"] and results["robot_user"]["mean"] == saved["mean"]
    text = (out / "results.md").read_text()
    section = text[text.index("## 8. Clinician-guided refinement (robot user): model '"):text.index("## 9. How to reproduce")]
    assert "| phantom3 | diffusion |" in section and "| **mean** | sphere |" in section
    assert all(f"| {t['target']} | {t['value']} |" in section for t in saved["targets"])
    assert "(figures/robot_user.png)" in section and (out / "figures" / "robot_user.png").read_bytes()[:8] == PNG_MAGIC
    assert not ABSOLUTE.search(text), ABSOLUTE.search(text)


def test_report_holds_no_absolute_path(region_report, tmp_path):
    for name in ("results.md", "results.json"):
        text = (region_report["out"] / name).read_text()
        assert not ABSOLUTE.search(text), ABSOLUTE.search(text)
        assert str(REPO) not in text and str(Path(tmp_path).parent.parent) not in text
    assert region_report["results"]["command"] == shown_argv(region_report["argv"])


def test_ensemble_prefixes_equal_smaller_runs(region_report, tiny_region_run, phantom_cases):
    """Sizes are the first k members of one run, sampled in chunks: each equals a fresh k-member segment_case."""
    model = load_model(tiny_region_run)
    results = region_report["results"]
    s = results["settings"]
    case = load_case(phantom_cases / "phantom3", model.modalities, with_label=True, optional=model.optional_modalities)
    for k in s["sizes"]:
        fresh = case_metrics(segment_case(model, case, SegmentOptions(members=k, sampler=s["sampler"], steps=s["steps"],
                                                                      seed=s["seed"], device="cpu")), case)
        reported = [r for r in results["sizes"][str(k)] if r["case"] == "phantom3"]
        assert [r["region"] for r in reported] == [r["region"] for r in fresh] == ["wt", "tc", "et"]
        for mine, theirs in zip(reported, fresh):
            for key in ("dice", "hd95_mm", "auroc_uncertainty_error", "qu_score", "predicted_ml", "passes_per_slice"):
                assert mine[key] == pytest.approx(theirs[key], nan_ok=True), (k, key)
    seconds = [results["sizes"][str(k)][0]["seconds"] for k in sorted(s["sizes"])]
    assert seconds == sorted(seconds), "k members cost at least what fewer members cost (cumulative chunks)"
    assert all(r["auroc_uncertainty_error"] == 0.5 for r in results["sizes"]["1"] if r["region"] == "wt")


def test_metric_columns_are_in_range(region_report):
    results = region_report["results"]
    rows = [r for k in results["sizes"].values() for r in k] + results["baseline"]
    rows += [r for res in results["subsets"] for r in res["rows"]] + results["flair"]["rows"]
    assert rows
    for r in rows:
        for key in ("dice", "qu_dice_auc", "qu_ftp_auc", "qu_ftn_auc", "qu_score"):
            assert 0.0 <= r[key] <= 1.0, (key, r)
    compute = results["baseline_compute"]
    assert compute["passes"] == compute["matched"], "no --baseline-passes: the FLOP-matched number is used"
    assert all(r["passes_per_slice"] == compute["passes"] for r in results["baseline"])


def test_compute_text_states_the_match_and_an_override():
    passes = {"passes": 132, "matched": 132, "diffusion_passes_per_slice": 50, "diffusion_gflop_per_pass": 1.051,
              "baseline_gflop_per_pass": 0.398, "flop_size": [128, 128]}
    text = compute_text(passes, Settings(), 700.0, 350.0)
    assert "50 × 1.051 / 0.398 ≈ 132 passes match its FLOPs." in text and "ratio 2.00" in text
    assert "set by --baseline-passes instead" in compute_text({**passes, "passes": 64}, Settings(), 1.0, 1.0)


def test_subset_rows_use_only_the_named_sequences_and_slices(region_report, tiny_region_run, phantom_cases):
    results = region_report["results"]
    assert [r["subset"] for r in results["subsets"][::2]] == ["flair", "flair+t1ce", "flair+t2", "flair+t1ce+t2"]
    for res in results["subsets"]:
        slices = {case: len(sources) for case, sources in results["subset_slices"].items()}
        for r in res["rows"]:
            assert r["modalities"] == res["modalities"]
            assert r["slices"] == slices[r["case"]]
    flair = results["flair"]
    assert flair["modalities"] == ["flair", "t1ce"] and all(r["region"] == "wt" for r in flair["rows"])
    assert flair["region_rows"] == next(r["rows"] for r in results["subsets"]
                                        if r["subset"] == "flair+t1ce" and r["method"] == "diffusion")

    # What the network is given: the left-out sequences are zero, their presence planes off.
    model = load_model(tiny_region_run)
    case = load_case(phantom_cases / "phantom3", model.modalities, with_label=True)
    seen = []

    def spy(prepared):
        seen.append((prepared.present, prepared.images[:, 2].abs().max().item(), len(prepared)))
        from benchmarks.evaluation.measure import diffusion_segment
        return diffusion_segment(model, Settings.quick(device="cpu"))(prepared)

    sources = results["subset_slices"]["phantom3"]
    rows = subset_rows(spy, lambda c: prepare_for(model, c), case, ("flair", "t1ce"), sources)
    assert seen == [((True, True, False), 0.0, len(sources))]
    assert [r["modalities"] for r in rows] == [["flair", "t1ce"]] * 3


def test_slice_subset_and_label_cut_score_only_the_sampled_slices(tiny_region_run, phantom_cases):
    model = load_model(tiny_region_run)
    case = load_case(phantom_cases / "phantom3", model.modalities, with_label=True)
    prepared = prepare_for(model, case)
    index = [1, 4, 7]
    part = slice_subset(prepared, index)
    maps = torch.rand(len(prepared), *prepared.images.shape[2:])
    full, restored = prepared.restore(maps), part.restore(maps[index])
    axis = prepared.frame.slice_axis
    kept = [prepared.source_slices[i] for i in index]
    assert np.array_equal(np.take(restored, kept, axis=axis), np.take(full, kept, axis=axis))
    others = [k for k in range(case.shape[axis]) if k not in kept]
    assert not np.take(restored, others, axis=axis).any()
    cut = restrict_label(case, axis, kept)
    assert np.array_equal(np.take(cut.label_map, kept, axis=axis), np.take(case.label_map, kept, axis=axis))
    assert not np.take(cut.label_map, others, axis=axis).any() and not np.take(cut.label, others, axis=axis).any()
    assert set(with_modalities(case, ("flair",)).images) == {"flair"}


def test_sequence_subsets_and_shown_paths():
    assert sequence_subsets(("flair", "t1", "t1ce", "t2"), ("t1", "t1ce", "t2")) == [
        ("flair",), ("flair", "t1"), ("flair", "t1ce"), ("flair", "t2"), ("flair", "t1", "t1ce"),
        ("flair", "t1", "t2"), ("flair", "t1ce", "t2"), ("flair", "t1", "t1ce", "t2")]
    assert sequence_subsets(("flair",), ()) == [("flair",)]
    assert shown_path(REPO.parent / "shared" / "data" / "x") == "../shared/data/x"
    assert shown_path(REPO / "runs" / "a") == "runs/a"
    assert shown_path("/elsewhere/deep/folder/run") == "…/folder/run"
    assert shown_path("docs") == "docs"


def test_whole_tumour_model_report(tiny_run, phantom_cases, tmp_path):
    """A whole-tumour model (like brats-flair): one region, one sequence subset, the other targets not measured."""
    out = tmp_path / "docs"
    results = eval_report.main(["--model", str(tiny_run), "--out", str(out), "--quick", "--device", "cpu",
                                "--cache", str(tmp_path / "cache")])
    text = (out / "results.md").read_text()
    assert {r["region"] for k in results["sizes"].values() for r in k} == {"wt"}
    assert [r["subset"] for r in results["subsets"]] == ["flair+t1ce"]
    met = {t["target"]: (t["met"], t["measured"]) for t in results["targets"]}
    assert met["Dice TC ≥ 0.80"] == (None, "no such output") and met["Dice WT ≥ 0.90"][0] is not None
    assert "Not run: give `--baseline" in text and "Not run: give `--flair-model" in text
    assert "**WT (whole tumour)**" in text and "**TC" not in text
    assert not ABSOLUTE.search(text)
