"""A region model (WT ⊇ TC ⊇ ET) with optional sequences, end to end through the CLI in a child process."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest

from DiffSegExtension.model_card import load_model
from test_cli_segment import oblique_case, run_engine  # noqa: F401  (fixture and helper)

REGION_FILES = {"wt": "", "tc": "_tc", "et": "_et"}


def test_card_declares_regions_inputs_and_labels(tiny_region_run):
    card = json.loads((tiny_region_run / "model.json").read_text())
    assert card["regions"] == ["wt", "tc", "et"]
    assert card["required_modalities"] == ["flair"] and card["optional_modalities"] == ["t1ce", "t2"]
    assert set(card["output_labels"]) == {"1", "2", "4"}
    model = load_model(tiny_region_run)
    assert model.regions == ("wt", "tc", "et") and model.config.network.in_channels == 3 + 2 + 3
    assert model.config.network.out_channels == 6
    assert set(card["training"]["validation_dice"]["mean"]) == {"wt", "tc", "et"}


@pytest.fixture(scope="module")
def region_outputs(tmp_path_factory, tiny_region_run, oblique_case):  # noqa: F811
    out = tmp_path_factory.mktemp("regions") / "out"
    done = run_engine("segment", "--model", tiny_region_run, "--flair", oblique_case / "oblique_flair.nii.gz",
                      "--t2", oblique_case / "oblique_t2.nii.gz", "--out", out, "--members", 3, "--steps", 2,
                      "--qubrats", "--progress", "none")
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_label_map_and_region_maps_are_nested_and_in_the_input_geometry(region_outputs, oblique_case):  # noqa: F811
    reference = nib.load(oblique_case / "oblique_flair.nii.gz")
    labels = np.asanyarray(nib.load(region_outputs / "segmentation.nii.gz").dataobj)
    assert set(np.unique(labels)) <= {0, 1, 2, 4}
    probability = {}
    for region, suffix in REGION_FILES.items():
        for kind, high in (("probability", 1.0), ("uncertainty", 0.25), ("entropy", 1.0)):
            image = nib.load(region_outputs / f"{kind}{suffix}.nii.gz")
            assert image.shape == reference.shape and np.allclose(image.affine, reference.affine, atol=1e-5)
            data = image.get_fdata()
            assert data.min() >= 0 and data.max() <= high + 1e-6
        probability[region] = nib.load(region_outputs / f"probability{suffix}.nii.gz").get_fdata()
    assert np.all(probability["wt"] >= probability["tc"] - 1e-6) and np.all(probability["tc"] >= probability["et"] - 1e-6)
    assert np.array_equal(labels > 0, probability["wt"] >= 0.5)
    assert np.array_equal(np.isin(labels, [1, 4]), probability["tc"] >= 0.5)
    assert np.array_equal(labels == 4, probability["et"] >= 0.5)


def test_qubrats_maps_and_region_volumes(region_outputs, oblique_case):  # noqa: F811
    reference = nib.load(oblique_case / "oblique_flair.nii.gz")
    summary = json.loads((region_outputs / "summary.json").read_text())
    assert summary["modalities_used"] == ["flair", "t2"]  # T1ce is optional and was not given
    voxel_ml = abs(np.linalg.det(reference.affine[:3, :3])) / 1000
    labels = np.asanyarray(nib.load(region_outputs / "segmentation.nii.gz").dataobj)
    expected = {"wt": labels > 0, "tc": np.isin(labels, [1, 4]), "et": labels == 4}
    for region, name in (("wt", "whole"), ("tc", "core"), ("et", "enhance")):
        assert summary["regions"][region]["voxels"] == int(expected[region].sum())
        assert summary["regions"][region]["volume_ml"] == pytest.approx(expected[region].sum() * voxel_ml, abs=1e-3)
        image = nib.load(region_outputs / f"oblique_unc_{name}.nii.gz")
        assert image.get_data_dtype() == np.uint8 and image.shape == reference.shape
        assert np.allclose(image.affine, reference.affine, atol=1e-5)
        entropy = nib.load(region_outputs / f"entropy{REGION_FILES[region]}.nii.gz").get_fdata()
        assert np.array_equal(np.asanyarray(image.dataobj), np.rint(entropy * 100).astype(np.uint8))


def test_a_missing_required_sequence_is_refused(tmp_path, tiny_region_run, oblique_case):  # noqa: F811
    done = run_engine("segment", "--model", tiny_region_run, "--t2", oblique_case / "oblique_t2.nii.gz",
                      "--out", tmp_path / "x", "--progress", "none")
    assert done.returncode == 2 and "needs flair (optional: t1ce, t2): add --flair" in done.stderr
    assert not (tmp_path / "x").exists()


def test_evaluate_reports_every_region_with_qubrats(tmp_path, tiny_region_run, phantom_cases):
    done = run_engine("evaluate", "--model", tiny_region_run, "--data", phantom_cases, "--out", tmp_path / "eval",
                      "--members", 2, "--steps", 2, "--modalities", "flair", "--progress", "none")
    assert done.returncode == 0, done.stderr[-2000:]
    with open(tmp_path / "eval" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["case"], r["region"]) for r in rows] == [("phantom3", "wt"), ("phantom3", "tc"), ("phantom3", "et")]
    for row in rows:
        for column in ("dice", "qu_dice_auc", "qu_ftp_auc", "qu_ftn_auc", "qu_score"):
            assert 0.0 <= float(row[column]) <= 1.0
    report = (tmp_path / "eval" / "results.md").read_text()
    assert "inputs flair," in report and "**ET** (enhancing tumour)" in report
