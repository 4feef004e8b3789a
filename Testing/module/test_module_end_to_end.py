"""End to end with the real engine: ``python -m DiffSegExtension segment`` in a child process.

The model is the bundled ``phantom`` model (Resources/Models/phantom) when it is there, else a
``tiny`` model trained for a few iterations by the shared ``tiny_run`` fixture: these tests check
the plumbing (geometry, files, scene, cancel, memory), not the model's quality.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import slicer
from conftest import ijk_to_ras, write_case

from DiffSegLib import geometry, refinerecord, regions, results, review
from DiffSegLib.logic import DiffSegCancelled, DiffSegLogic, RunRequest
from DiffSegLib.models import read_model_card

REPO = Path(__file__).resolve().parents[2]
BUNDLED_PHANTOM = REPO / "Resources" / "Models" / "phantom"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine_model(request):
    if (BUNDLED_PHANTOM / "model.json").is_file():
        return read_model_card(BUNDLED_PHANTOM)
    return read_model_card(request.getfixturevalue("tiny_run"))


@pytest.fixture
def scene_case(harness, tmp_path, engine_model):
    files = write_case(tmp_path / "data", seed=7)
    volumes = {m: harness.load_volume(files[m], f"case7_{m}") for m in engine_model.modalities}
    temp_root = tmp_path / "temp-root"
    temp_root.mkdir()
    logic = DiffSegLogic(scene=harness.scene, temp_root=temp_root)
    return volumes, logic, temp_root, files


def _request(model, volumes, **kw) -> RunRequest:
    kw.setdefault("members", 2)
    kw.setdefault("steps", 3)
    kw.setdefault("sampler", "dpmpp")
    kw.setdefault("device", "cpu")
    return RunRequest(model, dict(volumes), **kw)


def test_full_run_through_the_engine_matches_its_files(harness, engine_model, scene_case, tmp_path):
    volumes, logic, temp_root, _ = scene_case
    kept = tmp_path / "engine-outputs"
    progress = []
    seg, unc = logic.run(_request(engine_model, volumes, keep_engine_outputs=kept), on_progress=progress.append)
    reference = volumes[engine_model.reference_modality]

    # Determinate progress: one line per sampler step, counting up to the total.
    assert progress and progress[-1].done == progress[-1].total > 0
    assert [p.done for p in progress] == sorted(p.done for p in progress)

    # The segment, exported through a storage node, equals the engine's mask voxel for voxel and in geometry.
    labelmap = harness.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "export")
    assert slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
        seg, [regions.TUMOR.segment_id], labelmap, reference)
    labelmap.AddDefaultStorageNode()
    labelmap.GetStorageNode().SetFileName(str(tmp_path / "exported.nii.gz"))
    assert labelmap.GetStorageNode().WriteData(labelmap)
    exported = nib.load(str(tmp_path / "exported.nii.gz"))
    engine_mask = nib.load(str(kept / "segmentation.nii.gz"))
    assert exported.shape == engine_mask.shape
    assert np.array_equal(np.asarray(exported.dataobj), np.asarray(engine_mask.dataobj))
    assert np.allclose(exported.affine, engine_mask.affine, atol=1e-4)
    assert np.allclose(engine_mask.affine, ijk_to_ras(reference), atol=1e-4)

    # Uncertainty and probability: the input's IJK→RAS, the engine's values, the engine's ranges.
    probability, uncertainty = results.output_volumes(seg)
    assert uncertainty is unc
    assert np.array_equal(ijk_to_ras(unc), ijk_to_ras(reference))
    engine_unc = np.asarray(nib.load(str(kept / "uncertainty.nii.gz")).dataobj)
    engine_prob = np.asarray(nib.load(str(kept / "probability.nii.gz")).dataobj)
    assert np.array_equal(slicer.util.arrayFromVolume(unc).transpose(2, 1, 0), engine_unc)
    assert np.array_equal(slicer.util.arrayFromVolume(probability).transpose(2, 1, 0), engine_prob)
    assert 0 <= engine_unc.min() and engine_unc.max() <= 0.25 + 1e-6
    # The live threshold at 0.5 reproduces the engine's majority mask exactly.
    assert np.array_equal(engine_prob >= 0.5, np.asarray(engine_mask.dataobj) > 0)

    # The module predicts the engine's slice axis (used for ROI ranges, ranking and re-runs).
    summary = __import__("json").loads((kept / "summary.json").read_text())
    assert summary["slice_axis"] == geometry.slice_axis(reference)
    assert seg.GetAttribute("DiffSeg.SliceAxis") == str(summary["slice_axis"])
    assert list(temp_root.iterdir()) == []


def test_slice_range_run_and_rerun_merge_with_the_engine(harness, engine_model, scene_case, tmp_path):
    volumes, logic, temp_root, _ = scene_case
    reference = volumes[engine_model.reference_modality]
    axis = geometry.slice_axis(reference)
    n = geometry.dimensions(reference)[axis]
    seg, unc = logic.run(_request(engine_model, volumes))
    ids = harness.node_ids()
    probability, _ = results.output_volumes(seg)
    before = np.array(slicer.util.arrayFromVolume(probability))
    slab = (n // 2 - 1, n // 2 + 1)
    kept = tmp_path / "rerun"
    request = logic.rerun_request(seg, slices=slab, members=3, steps=3, device="cpu")
    request.keep_engine_outputs = kept
    logic.run(request)
    assert harness.node_ids() == ids
    summary = __import__("json").loads((kept / "summary.json").read_text())
    assert summary["slice_range"] == list(slab)
    after = np.moveaxis(np.array(slicer.util.arrayFromVolume(probability)), 2 - axis, 0)
    engine = np.moveaxis(np.asarray(nib.load(str(kept / "probability.nii.gz")).dataobj).transpose(2, 1, 0), 2 - axis, 0)
    inside = np.zeros(n, dtype=bool)
    inside[slab[0]:slab[1]] = True
    assert np.array_equal(after[inside], engine[inside])
    assert np.array_equal(after[~inside], np.moveaxis(before, 2 - axis, 0)[~inside])
    assert np.all(engine[~inside] == 0)  # the engine leaves slices outside --slices at 0
    assert list(temp_root.iterdir()) == []


def test_console_run_takes_the_cards_adaptive_ensemble_and_rerun_here_the_full_one(harness, scene_case,
                                                                                   adaptive_phantom, tmp_path):
    """A card whose default is ``adaptive``: the console run's engine sampled adaptively (its summary says so) and the
    result records it; Re-run here on that result samples the full ensemble."""
    volumes, logic, temp_root, _ = scene_case
    seg, _ = logic.segment(**volumes, model=str(adaptive_phantom), members=2, steps=3, device="cpu")
    summary = json.loads((refinerecord.record_of(seg) / refinerecord.SUMMARY).read_text())
    assert summary["options"]["ensemble"] == "adaptive" and summary["options"]["members"] == 2
    assert seg.GetAttribute("DiffSeg.Ensemble") == "adaptive"
    reference = volumes[read_model_card(adaptive_phantom).reference_modality]
    middle = geometry.dimensions(reference)[geometry.slice_axis(reference)] // 2
    request = logic.rerun_request(seg, slices=(middle - 1, middle + 1), members=3, steps=3, device="cpu")
    request.keep_engine_outputs = tmp_path / "rerun"
    logic.run(request)
    options = json.loads((tmp_path / "rerun" / "summary.json").read_text())["options"]
    assert options["ensemble"] == "full" and options["members"] == 3
    assert seg.GetAttribute("DiffSeg.LastRefinement").startswith(f"slices {middle - 1}:{middle + 1} with 3 members "
                                                                 "(full)")
    assert seg.GetAttribute("DiffSeg.Ensemble") == "adaptive" and list(temp_root.iterdir()) == []


def test_cancel_mid_run_leaves_no_node_and_no_temporary_file(harness, engine_model, scene_case):
    volumes, logic, temp_root, _ = scene_case
    before, items = harness.snapshot(), harness.hierarchy_items()
    handle = logic.start(_request(engine_model, volumes, steps=200, members=4))
    deadline = time.monotonic() + 120
    while handle.progress is None and handle.running and time.monotonic() < deadline:
        handle.poll()
        time.sleep(0.05)
    assert handle.progress is not None and handle.progress.done < handle.progress.total, "cancel must hit mid-run"
    pid = handle.runner.process.pid
    logic.cancel(handle)
    with pytest.raises(DiffSegCancelled):
        logic.finish(handle)
    assert handle.runner.process.poll() is not None, f"engine process {pid} still running"
    assert harness.snapshot() == before and harness.hierarchy_items() == items
    assert list(temp_root.iterdir()) == []


def test_second_run_replaces_and_mrb_round_trip(harness, engine_model, scene_case, tmp_path):
    volumes, logic, temp_root, _ = scene_case
    seg, unc = logic.run(_request(engine_model, volumes, seed=1))
    ids = harness.node_ids()
    seg2, unc2 = logic.run(_request(engine_model, volumes, seed=2))
    assert (seg2.GetID(), unc2.GetID()) == (seg.GetID(), unc.GetID()) and harness.node_ids() == ids
    values = np.array(slicer.util.arrayFromVolume(unc2))
    with harness.reloaded_from_mrb(tmp_path) as scene:
        reloaded = results.find_outputs(scene, seg.GetAttribute(results.KEY_ATTRIBUTE))
        _, unc3 = results.output_volumes(reloaded)
        assert np.array_equal(slicer.util.arrayFromVolume(unc3), values)
        assert np.allclose(ijk_to_ras(unc3), ijk_to_ras(volumes[engine_model.reference_modality]), atol=1e-4)
        assert review.rank_slices(reloaded) is not None


def test_ten_runs_keep_the_node_count_and_memory_flat(harness, engine_model, scene_case):
    volumes, logic, temp_root, _ = scene_case
    reference = volumes[engine_model.reference_modality]
    n = geometry.dimensions(reference)[geometry.slice_axis(reference)]
    one_slice = (n // 2, n // 2 + 1)
    logic.run(_request(engine_model, volumes, members=1, steps=1, slices=one_slice))
    counts, rss = [], []
    for seed in range(10):
        logic.run(_request(engine_model, volumes, members=1, steps=1, slices=one_slice, seed=seed))
        counts.append(harness.scene.GetNumberOfNodes())
        rss.append(_rss_mb())
    assert len(set(counts)) == 1, counts
    assert rss[-1] - rss[0] < 25, f"resident memory grew from {rss[0]:.0f} MB to {rss[-1]:.0f} MB over ten runs"
    assert list(temp_root.iterdir()) == []


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def test_selftest_case_reaches_the_dice_bar_with_the_bundled_model(harness, tmp_path):
    """What DiffSegTest does inside Slicer, under slicer-core: the bar it uses is checked here."""
    from DiffSegExtension.data.phantom import make_phantom, write_phantom_case

    from DiffSegLib import selftest

    assert (BUNDLED_PHANTOM / "model.json").is_file(), "the bundled phantom model is missing from Resources/Models"
    p = selftest.PHANTOM
    case = write_phantom_case(tmp_path, selftest.CASE_NAME,
                              make_phantom(p["seed"], shape=p["shape"], spacing=p["spacing"], oblique=p["oblique"]))
    volumes = {m: harness.load_volume(case / f"{selftest.CASE_NAME}_{m}.nii.gz", f"{selftest.CASE_NAME}_{m}")
               for m in ("flair", "t1", "t1ce", "t2")}
    truth = harness.load_volume(case / f"{selftest.CASE_NAME}_seg.nii.gz", "truth")
    seg, _ = DiffSegLogic(scene=harness.scene).segment(**volumes, model=selftest.MODEL, **selftest.RUN)
    reference = seg.GetNodeReference(results.INPUT_REFERENCE)
    labelmap = harness.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "export")
    assert slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
        seg, [regions.TUMOR.segment_id], labelmap, reference)
    mask = slicer.util.arrayFromVolume(labelmap) > 0
    label = slicer.util.arrayFromVolume(truth) > 0
    score = selftest.dice(mask, label)
    assert score > selftest.MIN_DICE, f"Dice {score:.3f} against the phantom's truth"
    # Control: the same mask against the truth moved by half the field of view scores below the bar.
    for axis in (0, 1, 2):
        moved = np.roll(label, label.shape[axis] // 2, axis=axis)
        assert selftest.dice(mask, moved) < selftest.MIN_DICE
