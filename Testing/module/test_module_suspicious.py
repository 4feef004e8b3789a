"""Suspicious-input warnings in the module, on real NIfTI files loaded as nodes; same verdicts as the engine's."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from DiffSegExtension.data import input_checks
from DiffSegExtension.data.loading import load_case
from DiffSegLib import suspicious
from DiffSegLib.geometry import vtk_matrix
from DiffSegLib.logic import DiffSegLogic, RunRequest
from test_module_inputs import FOUR

MODALITIES = ("flair", "t1", "t1ce", "t2")


def _write(path, data, affine):
    nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine), str(path))
    return path


def _skull_and_air(data: np.ndarray) -> np.ndarray:
    """The brain inside a bright 3-voxel shell, with noise in the air around it (not skull-stripped)."""
    brain = data > 0
    grown = brain.copy()
    for axis in range(3):
        for shift in (-3, -2, -1, 1, 2, 3):
            grown |= np.roll(brain, shift, axis=axis)
    noise = np.abs(np.random.default_rng(0).normal(0, 0.02 * data.max(), data.shape))
    return np.where(grown & ~brain, 2.5 * data.max(), np.where(brain, data, noise))


@pytest.fixture
def variants(tmp_path, case_files):
    """Case files plus a T2 shifted 10 mm (header) and a T1 with skull and noisy air."""
    t2 = nib.load(str(case_files["t2"]))
    moved = t2.affine.copy()
    moved[:3, 3] += [10.0, 0.0, 0.0]
    t1 = nib.load(str(case_files["t1"]))
    return {"t2_shifted": _write(tmp_path / "case0_t2_shifted.nii.gz", t2.dataobj, moved),
            "t1_unstripped": _write(tmp_path / "case0_t1_unstripped.nii.gz",
                                    _skull_and_air(np.asarray(t1.dataobj, dtype=np.float32)), t1.affine)}


def _warnings(volumes, **replaced):
    return DiffSegLogic().warnings(RunRequest(FOUR, dict(volumes, **replaced)))


def test_constants_are_the_engines():
    for name in ("MIN_BACKGROUND_FRACTION", "MAX_BRAIN_ML", "MIN_REFERENCE_COVERAGE"):
        assert getattr(suspicious, name) == getattr(input_checks, name), name


def test_a_clean_phantom_gives_no_warning(volumes):
    assert _warnings(volumes) == []


def test_shifted_sequence_is_named_and_judged_in_physical_space(harness, volumes, variants):
    shifted = harness.load_volume(variants["t2_shifted"], "case0_t2_shifted")
    warnings = _warnings(volumes, t2=shifted)
    assert len(warnings) == 1
    assert warnings[0].startswith("'case0_t2_shifted' (T2) covers only") and "'case0_flair' (FLAIR)" in warnings[0]
    assert "not co-registered" in warnings[0] and "register them first" in warnings[0]
    # A parent transform that undoes the shift makes the volumes co-registered again.
    transform = harness.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    back = np.eye(4)
    back[0, 3] = -10.0
    transform.SetMatrixTransformToParent(vtk_matrix(back))
    shifted.SetAndObserveTransformNodeID(transform.GetID())
    assert _warnings(volumes, t2=shifted) == []


def test_unstripped_volume_is_named(harness, volumes, variants):
    unstripped = harness.load_volume(variants["t1_unstripped"], "case0_t1_unstripped")
    warnings = _warnings(volumes, t1=unstripped)
    assert len(warnings) == 1 and warnings[0].startswith("'case0_t1_unstripped' (T1) does not look skull-stripped")
    assert warnings[0].endswith("check the result closely.") and "\n" not in warnings[0]


def test_module_and_engine_flag_the_same_volumes(harness, volumes, variants, case_files):
    """The same files through the panel (nodes) and through the CLI's loader give the same verdicts."""
    nodes = dict(volumes, t1=harness.load_volume(variants["t1_unstripped"], "t1u"),
                 t2=harness.load_volume(variants["t2_shifted"], "t2s"))
    module = _warnings(nodes)
    files = dict(case_files, t1=variants["t1_unstripped"], t2=variants["t2_shifted"])
    case = load_case({m: files[m] for m in MODALITIES}, MODALITIES)
    engine = input_checks.input_warnings(case.images, case.affine)

    assert sorted((w.split("'")[1], "skull-stripped" in w) for w in module) == [("t1u", True), ("t2s", False)]
    assert sorted((w.split(" ")[0], "skull-stripped" in w) for w in engine) == [("T1", True), ("T2", False)]
