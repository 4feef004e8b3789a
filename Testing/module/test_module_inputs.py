"""Invalid inputs: each raises one clear error before anything runs, and the scene is untouched."""

from __future__ import annotations

import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from DiffSegLib.inputs import DiffSegInputError, input_problems
from DiffSegLib.logic import DiffSegLogic, RunRequest
from DiffSegLib.models import ModelCard

REPO = Path(__file__).resolve().parents[2]
FOUR = ModelCard("phantom", "Phantom (4 modalities)", path=REPO / "Resources" / "Models" / "phantom",
                 modalities=("flair", "t1", "t1ce", "t2"))


def _load_variant(harness, tmp_path, source, name, data=None, affine=None):
    image = nib.load(str(source))
    path = tmp_path / f"{name}.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj) if data is None else data,
                             image.affine if affine is None else affine), str(path))
    return harness.load_volume(path, name)


def _assert_rejected(harness, tmp_path, request, match):
    """The logic refuses ``request`` with one sentence matching ``match``; nothing changes anywhere."""
    before_nodes, before_items = harness.snapshot(), harness.hierarchy_items()
    temp_root = tmp_path / "temp-root"
    temp_root.mkdir(exist_ok=True)
    logic = DiffSegLogic(scene=harness.scene, temp_root=temp_root)
    with pytest.raises(DiffSegInputError, match=match) as caught:
        logic.start(request)
    message = str(caught.value)
    assert "\n" not in message and message.endswith(".")
    assert harness.snapshot() == before_nodes
    assert harness.hierarchy_items() == before_items
    assert list(temp_root.iterdir()) == []  # nothing written
    return message


def test_valid_inputs_have_no_problems(volumes):
    assert input_problems(FOUR, volumes) == []


def test_missing_modality(harness, tmp_path, volumes):
    chosen = dict(volumes, t1ce=None)
    del chosen["t2"]
    message = _assert_rejected(harness, tmp_path, RunRequest(FOUR, chosen), "Select a volume for")
    assert "T1ce" in message and "T2" in message and "FLAIR" not in message.split("needs")[0]


def test_same_volume_twice(harness, tmp_path, volumes):
    chosen = dict(volumes, t2=volumes["flair"])
    message = _assert_rejected(harness, tmp_path, RunRequest(FOUR, chosen), "same volume")
    assert "'case0_flair'" in message and "FLAIR" in message and "T2" in message


def test_non_overlapping_volumes(harness, tmp_path, volumes, case_files):
    far = nib.load(str(case_files["t2"])).affine.copy()
    far[:3, 3] += [400.0, 0.0, 0.0]
    moved = _load_variant(harness, tmp_path, case_files["t2"], "t2_far", affine=far)
    _assert_rejected(harness, tmp_path, RunRequest(FOUR, dict(volumes, t2=moved)), "do not overlap in physical space")


def test_overlap_is_judged_after_parent_transforms(harness, tmp_path, volumes, case_files):
    """The far-away T2 becomes valid once a transform brings it back: overlap is physical."""
    far = nib.load(str(case_files["t2"])).affine.copy()
    far[:3, 3] += [400.0, 0.0, 0.0]
    moved = _load_variant(harness, tmp_path, case_files["t2"], "t2_far", affine=far)
    transform = harness.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    from DiffSegLib.geometry import vtk_matrix
    back = np.eye(4)
    back[0, 3] = -400.0
    transform.SetMatrixTransformToParent(vtk_matrix(back))
    moved.SetAndObserveTransformNodeID(transform.GetID())
    assert input_problems(FOUR, dict(volumes, t2=moved)) == []


def test_2d_volume(harness, tmp_path, volumes, case_files):
    data = np.asarray(nib.load(str(case_files["t1"])).dataobj)[:, :, 5:6]
    flat = _load_variant(harness, tmp_path, case_files["t1"], "t1_single_slice", data=data)
    message = _assert_rejected(harness, tmp_path, RunRequest(FOUR, dict(volumes, t1=flat)), "is 2D")
    assert "'t1_single_slice'" in message and "3D volume" in message


def test_label_map_is_not_an_mri(harness, tmp_path, volumes):
    label = harness.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    label.SetAndObserveImageData(volumes["t1"].GetImageData())
    _assert_rejected(harness, tmp_path, RunRequest(FOUR, dict(volumes, t1=label)), "not a scalar image volume")


def test_bad_parameters_and_slice_range(harness, tmp_path, volumes):
    _assert_rejected(harness, tmp_path, RunRequest(FOUR, volumes, sampler="euler"), "Unknown sampler")
    _assert_rejected(harness, tmp_path, RunRequest(FOUR, volumes, device="tpu"), "Unknown device")
    _assert_rejected(harness, tmp_path, RunRequest(FOUR, volumes, members=0), "at least 1")
    _assert_rejected(harness, tmp_path, RunRequest(FOUR, volumes, slices=(5, 500)), "slice range 5:500 is outside")


def test_roi_outside_the_volume(harness, tmp_path, volumes):
    roi = harness.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "far roi")
    roi.SetCenterWorld(5000, 5000, 5000)
    roi.SetSize(10, 10, 10)
    _assert_rejected(harness, tmp_path, RunRequest(FOUR, volumes, roi=roi), "does not cross")


def test_problems_are_listed_without_side_effects(harness, volumes):
    before = harness.snapshot()
    problems = DiffSegLogic(scene=harness.scene).problems(RunRequest(FOUR, dict(volumes, t1=None)))
    assert len(problems) == 1 and problems[0].startswith("Select a volume for T1")
    assert harness.snapshot() == before


def _console_refusal(harness, tmp_path, node, model=FOUR.path):
    """``DiffSegLogic().segment`` as typed in the Python console: refused at once, naming ``node``."""
    temp_root = tmp_path / "temp-root"
    temp_root.mkdir(exist_ok=True)
    before = harness.snapshot()
    started = time.monotonic()
    with pytest.raises(DiffSegInputError) as caught:
        DiffSegLogic(scene=harness.scene, temp_root=temp_root).segment(flair=node, model=str(model))
    assert time.monotonic() - started < 2.0, "refused by the module, not seconds later by the engine"
    assert harness.snapshot() == before and list(temp_root.iterdir()) == []
    message = str(caught.value)
    assert "\n" not in message and "inputs/" not in message and "temp" not in message.lower()
    return message


@pytest.fixture
def flair_model(tmp_path):
    """A FLAIR-only model folder made of the bundled brats-flair card and weights."""
    folder = tmp_path / "flair-model"
    folder.mkdir()
    bundled = REPO / "Resources" / "Models" / "brats-flair"
    for name in ("model.json", "weights.safetensors"):
        (folder / name).write_bytes((bundled / name).read_bytes())
    return folder


def test_console_refuses_nan_voxels_at_once_naming_the_volume(harness, tmp_path, case_files, flair_model):
    """NaN/inf come from arrays computed in the console (Slicer's NIfTI reader itself loads NaN as 0)."""
    import slicer

    node = _load_variant(harness, tmp_path, case_files["flair"], "patient_flair_nan")
    array = slicer.util.arrayFromVolume(node)
    array[3, 4, 5], array[6, 7, 8] = np.nan, np.inf
    slicer.util.arrayFromVolumeModified(node)
    message = _console_refusal(harness, tmp_path, node, flair_model)
    assert message.startswith("'patient_flair_nan' (FLAIR) has 2 NaN or infinite voxels; replace them")


def test_console_refuses_a_constant_volume_at_once(harness, tmp_path, case_files, flair_model):
    data = np.full(nib.load(str(case_files["flair"])).shape, 7.0, dtype=np.float32)
    node = _load_variant(harness, tmp_path, case_files["flair"], "blank_flair", data=data)
    message = _console_refusal(harness, tmp_path, node, flair_model)
    assert message.startswith("'blank_flair' (FLAIR) is constant (every voxel is 7)")


def test_fixing_the_voxels_in_place_clears_the_problem(harness, tmp_path, case_files):
    """The verdict is cached per image modification: editing the array (as the console does) counts."""
    import slicer

    node = _load_variant(harness, tmp_path, case_files["flair"], "fixable_flair")
    card = ModelCard("f", "F", FOUR.path, ("flair",))
    assert input_problems(card, {"flair": node}) == []
    array = slicer.util.arrayFromVolume(node)
    array[0, 0, 0] = np.nan
    slicer.util.arrayFromVolumeModified(node)
    assert "NaN" in input_problems(card, {"flair": node})[0]
    array[~np.isfinite(array)] = 0
    slicer.util.arrayFromVolumeModified(node)
    assert input_problems(card, {"flair": node}) == []


def test_console_refuses_pickled_weights_at_once(harness, tmp_path, volumes, flair_model):
    (flair_model / "weights.safetensors").write_bytes(b"\x80\x04\x95" + b"\x00" * 64)  # pickle protocol 4
    message = _console_refusal(harness, tmp_path, volumes["flair"], flair_model)
    assert "pickle" in message and "never loads" in message and "safetensors.torch.save_file" in message
    (flair_model / "weights.safetensors").unlink()
    assert "has no weights.safetensors" in _console_refusal(harness, tmp_path, volumes["flair"], flair_model)
