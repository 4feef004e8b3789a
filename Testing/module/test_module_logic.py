"""DiffSegLogic on a real scene with a real child process (the protocol stand-in ``stub_engine``).

Fast and with failures on demand: what the scene looks like after a run, a second run, a failed
run, a cancelled run, a threshold change, a ranking, a re-run merge and a scene round trip through
``.mrb``. ``test_module_end_to_end.py`` repeats the essentials with the real engine.
"""

from __future__ import annotations

import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import slicer
import vtk
from conftest import ijk_to_ras

from DiffSegLib import geometry, regions, results, review
from DiffSegLib.logic import DiffSegCancelled, DiffSegRunError


def export_segment(harness, segmentation, reference, path: Path) -> nib.Nifti1Image:
    """The "Tumor" segment as a labelmap on the reference grid, written through a storage node."""
    labelmap = harness.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "export")
    assert slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
        segmentation, [regions.TUMOR.segment_id], labelmap, reference)
    labelmap.AddDefaultStorageNode()
    storage = labelmap.GetStorageNode()
    storage.SetFileName(str(path))
    assert storage.WriteData(labelmap)
    results.remove_node(harness.scene, labelmap)
    return nib.load(str(path))


def _array(node) -> np.ndarray:
    return np.array(slicer.util.arrayFromVolume(node))


def test_run_puts_named_segment_and_volumes_in_the_scene(harness, stub, volumes):
    kept = stub.tmp / "engine-out"
    seg, unc = stub.logic().run(stub.request(keep_engine_outputs=kept))
    flair = volumes["flair"]
    assert seg.IsA("vtkMRMLSegmentationNode") and unc.IsA("vtkMRMLScalarVolumeNode")
    segment = seg.GetSegmentation().GetSegment(regions.TUMOR.segment_id)
    assert segment.GetName() == "Tumor"
    assert np.allclose(segment.GetColor(), regions.TUMOR.color)
    terminology = vtk.reference("")
    assert segment.GetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), terminology)
    assert str(terminology) == regions.TUMOR.terminology and "SCT^108369006^Neoplasm" in str(terminology)
    assert seg.GetNodeReference(seg.GetReferenceImageGeometryReferenceRole()) is flair
    # Geometry: the uncertainty shares the input's IJK→RAS exactly; the mask equals the engine's NIfTI.
    assert np.array_equal(ijk_to_ras(unc), ijk_to_ras(flair))
    engine_mask = nib.load(str(kept / "segmentation.nii.gz"))
    exported = export_segment(harness, seg, flair, stub.tmp / "exported.nii.gz")
    assert np.array_equal(np.asarray(exported.dataobj), np.asarray(engine_mask.dataobj))
    assert np.allclose(exported.affine, engine_mask.affine, atol=1e-4)
    assert np.asarray(engine_mask.dataobj).any()
    # Probability kept and referenced; uncertainty displayed as a foreground overlay.
    probability, uncertainty = results.output_volumes(seg)
    assert uncertainty is unc and probability is not None
    assert np.array_equal(_array(probability).transpose(2, 1, 0),
                          np.asarray(nib.load(str(kept / "probability.nii.gz")).dataobj))
    display = unc.GetDisplayNode()
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == results.UNCERTAINTY_RANGE
    shown = probability.GetDisplayNode()
    assert (shown.GetWindowLevelMin(), shown.GetWindowLevelMax()) == (0.0, 1.0)
    assert not display.GetAutoWindowLevel() and not shown.GetAutoWindowLevel()  # fixed ranges, set before the images
    assert display.GetColorNode().GetName() in ("Inferno", "Viridis", results.FALLBACK_COLOR_NAME)
    assert harness.composite.GetForegroundVolumeID() == unc.GetID()
    assert harness.composite.GetForegroundOpacity() == pytest.approx(0.5)
    assert harness.composite.GetBackgroundVolumeID() == flair.GetID()
    # Subject hierarchy: next to the input, in its study.
    hierarchy = harness.scene.GetSubjectHierarchyNode()
    for node in (seg, unc, probability):
        assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(node)) == harness.study
    assert seg.GetAttribute("DiffSeg.Members") == "4" and seg.GetAttribute("DiffSeg.SliceAxis") == str(stub.axis)
    assert list(stub.temp_root.iterdir()) == []


def test_second_run_replaces_the_outputs(harness, stub):
    logic = stub.logic()
    seg1, unc1 = logic.run(stub.request(seed=1))
    ids = harness.node_ids()
    first = _array(unc1).copy()
    seg2, unc2 = logic.run(stub.request(seed=2))
    assert (seg2.GetID(), unc2.GetID()) == (seg1.GetID(), unc1.GetID())
    assert harness.node_ids() == ids
    assert not np.array_equal(_array(unc2), first)
    # ... unless new outputs are asked for.
    seg3, _ = logic.run(stub.request(seed=3, new_outputs=True))
    assert seg3.GetID() != seg1.GetID() and len(harness.node_ids()) > len(ids)


@pytest.mark.parametrize("mode, message", [("error", "could not run: the model needs t2"),
                                           ("crash", "exit code 1"),
                                           ("bad-output", "could not be loaded")])
def test_failed_run_changes_nothing(harness, stub, mode, message):
    before, items = harness.snapshot(), harness.hierarchy_items()
    with pytest.raises(DiffSegRunError, match=message) as caught:
        stub.logic(mode).run(stub.request())
    if mode == "crash":
        assert "stub engine crashed on purpose" in str(caught.value)
    assert harness.snapshot() == before and harness.hierarchy_items() == items
    assert list(stub.temp_root.iterdir()) == []


def test_cancel_mid_run_leaves_no_node_and_no_temporary_file(harness, stub):
    before, items = harness.snapshot(), harness.hierarchy_items()
    logic = stub.logic("hang")
    handle = logic.start(stub.request())
    assert any(stub.temp_root.iterdir())  # inputs were written
    deadline = time.monotonic() + 60
    while handle.progress is None and time.monotonic() < deadline:
        handle.poll()
        time.sleep(0.02)
    assert handle.progress is not None and handle.running
    logic.cancel(handle)
    assert not handle.running
    with pytest.raises(DiffSegCancelled):
        logic.finish(handle)
    assert harness.snapshot() == before and harness.hierarchy_items() == items
    assert list(stub.temp_root.iterdir()) == []


def test_threshold_updates_the_segment_from_the_probability(harness, stub, volumes):
    seg, _ = stub.logic().run(stub.request(members=8))
    probability, _ = results.output_volumes(seg)
    prob = _array(probability)
    flair = volumes["flair"]
    for threshold in (0.25, 0.875, 0.5):
        review.apply_threshold(seg, threshold)
        exported = export_segment(harness, seg, flair, stub.tmp / f"t{threshold}.nii.gz")
        assert np.array_equal(np.asarray(exported.dataobj), (prob >= threshold).transpose(2, 1, 0).astype(np.uint8))
        assert seg.GetAttribute(review.THRESHOLD_ATTRIBUTE) == f"{threshold:g}"
    with pytest.raises(ValueError):
        review.apply_threshold(seg, 0.0)


def test_slices_are_ranked_by_mean_uncertainty_inside_the_probability(stub, harness, volumes):
    seg, unc = stub.logic().run(stub.request(members=6))
    probability, _ = results.output_volumes(seg)
    axis = 2 - stub.axis
    prob = np.moveaxis(_array(probability), axis, 0)
    var = np.moveaxis(_array(unc), axis, 0)
    ranked = review.rank_slices(seg)
    expected = {i: var[i][prob[i] > 0].mean() for i in range(prob.shape[0]) if (prob[i] > 0).any()}
    assert [r.index for r in ranked] == sorted(expected, key=lambda i: (-expected[i], i))
    for r in ranked:
        assert r.mean_uncertainty == pytest.approx(expected[r.index], rel=1e-5)
    # "Here" for a re-run: the slices around the one a view shows.
    here = geometry.slice_center_world(volumes["flair"], stub.axis, ranked[0].index)
    n = geometry.dimensions(volumes["flair"])[stub.axis]
    assert review.slices_around(seg, here, half_width=2) == (max(0, ranked[0].index - 2), min(n, ranked[0].index + 3))
    # Jump: the slice view is centred on that slice of the (oblique) reference volume.
    position = review.jump_to_slice(seg, ranked[0].index)
    slice_to_ras = harness.slice_node.GetSliceToRAS()
    centre = [slice_to_ras.GetElement(r, 3) for r in range(3)]
    assert np.allclose(centre, position, atol=1e-3)


def test_rerun_here_merges_only_the_chosen_slices(harness, stub):
    logic = stub.logic()
    seg, unc = logic.run(stub.request(members=4, seed=5))
    probability, _ = results.output_volumes(seg)
    old_prob, old_unc = _array(probability).copy(), _array(unc).copy()
    ids = harness.node_ids()
    ranked = review.rank_slices(seg)
    centre = ranked[0].index
    slices = (max(0, centre - 1), centre + 2)
    kept = stub.tmp / "rerun-out"
    request = logic.rerun_request(seg, slices=slices, members=12)
    request.keep_engine_outputs = kept
    assert request.members == 12 and request.merge_into is seg
    seg2, unc2 = logic.run(request)
    assert (seg2.GetID(), unc2.GetID()) == (seg.GetID(), unc.GetID()) and harness.node_ids() == ids
    axis = 2 - stub.axis
    new_prob = np.moveaxis(np.asarray(nib.load(str(kept / "probability.nii.gz")).dataobj).transpose(2, 1, 0), axis, 0)
    merged = np.moveaxis(_array(probability), axis, 0)
    before = np.moveaxis(old_prob, axis, 0)
    inside = np.zeros(merged.shape[0], dtype=bool)
    inside[slices[0]:slices[1]] = True
    assert np.array_equal(merged[inside], new_prob[inside])
    assert np.array_equal(merged[~inside], before[~inside])
    assert np.array_equal(np.moveaxis(_array(unc), axis, 0)[~inside], np.moveaxis(old_unc, axis, 0)[~inside])
    assert "12 members" in seg.GetAttribute("DiffSeg.LastRefinement")


def test_scene_saved_to_mrb_and_reloaded_keeps_the_outputs(harness, stub, tmp_path):
    seg, unc = stub.logic().run(stub.request())
    review.apply_threshold(seg, 0.25)
    probability, _ = results.output_volumes(seg)
    prob, var = _array(probability).copy(), _array(unc).copy()
    with harness.reloaded_from_mrb(tmp_path) as scene:
        key = seg.GetAttribute(results.KEY_ATTRIBUTE)
        reloaded = results.find_outputs(scene, key)
        assert reloaded is not None
        prob2, unc2 = results.output_volumes(reloaded)
        assert np.array_equal(_array(prob2), prob) and np.array_equal(_array(unc2), var)
        assert reloaded.GetAttribute(review.THRESHOLD_ATTRIBUTE) == "0.25"
        assert reloaded.GetSegmentation().GetSegment(regions.TUMOR.segment_id).GetName() == "Tumor"
        reference = reloaded.GetNodeReference(results.INPUT_REFERENCE)
        assert reference is not None and reference.GetName() == "case0_flair"
        assert np.allclose(ijk_to_ras(unc2), ijk_to_ras(reference), atol=1e-4)
        review.apply_threshold(reloaded, 0.5)  # the review tools work on the reloaded scene
        assert review.rank_slices(reloaded)


def test_ten_runs_do_not_accumulate_nodes_or_memory(harness, stub):
    logic = stub.logic()
    logic.run(stub.request(seed=0))
    counts, rss = [], []
    for seed in range(1, 11):
        logic.run(stub.request(seed=seed))
        counts.append(harness.scene.GetNumberOfNodes())
        rss.append(_rss_mb())
    assert len(set(counts)) == 1
    assert rss[-1] - rss[1] < 30, f"resident memory grew from {rss[1]:.0f} to {rss[-1]:.0f} MB"


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def test_console_ensemble_defaults_to_the_cards_and_can_be_overridden(harness, stub, volumes, adaptive_phantom):
    """``segment(ensemble=None)`` runs the card's default, an explicit value wins, an unknown one is refused at once."""
    from DiffSegLib.inputs import DiffSegInputError

    logic = stub.logic()
    seg, _ = logic.segment(**volumes, model=str(adaptive_phantom), members=3, steps=2)
    assert seg.GetAttribute("DiffSeg.Ensemble") == "adaptive"
    seg, _ = logic.segment(**volumes, model=str(adaptive_phantom), members=3, steps=2, ensemble="full",
                           new_outputs=True)
    assert seg.GetAttribute("DiffSeg.Ensemble") == "full"
    with pytest.raises(DiffSegInputError, match="Unknown ensemble 'some'"):
        logic.segment(**volumes, model=str(adaptive_phantom), ensemble="some")
