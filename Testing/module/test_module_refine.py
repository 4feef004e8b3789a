"""Refinement through the logic with the real engine (``diffseg refine`` in a child process) on real MRML nodes.

The phantom grid is oblique and non-isotropic (conftest), so every point here is placed at a voxel's RAS
position through that grid, and checked at the same voxel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import slicer
import vtk
from conftest import ijk_to_ras, write_case

from DiffSegLib import geometry, refinerecord, results, segments, selftest
from DiffSegLib.logic import DiffSegCancelled, DiffSegLogic, DiffSegRunError, RunRequest
from DiffSegLib.models import read_model_card
from DiffSegLib.regions import TUMOR

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine_model():
    return read_model_card(REPO / "Resources" / "Models" / "phantom")


@pytest.fixture
def refined_case(harness, tmp_path, engine_model):
    """A segmented phantom: (logic, volumes, segmentation, temp_root, results_root)."""
    volumes = phantom_volumes(harness, tmp_path, engine_model)
    temp_root, results_root = tmp_path / "temp-root", tmp_path / "results"
    temp_root.mkdir()
    logic = DiffSegLogic(scene=harness.scene, temp_root=temp_root, results_root=results_root)
    seg, _ = logic.run(run_request(engine_model, volumes))
    return logic, volumes, seg, temp_root, results_root


def phantom_volumes(harness, tmp_path, model) -> dict:
    """The self-test phantom (oblique, non-isotropic; the bundled model finds its tumour) loaded into the scene."""
    p = selftest.PHANTOM
    files = write_case(tmp_path / "data", seed=p["seed"], shape=p["shape"], spacing=p["spacing"], oblique=p["oblique"])
    return {m: harness.load_volume(files[m], f"case_{m}") for m in model.modalities}


def run_request(model, volumes) -> RunRequest:
    return RunRequest(model, dict(volumes), members=selftest.RUN["members"], steps=selftest.RUN["steps"], device="cpu")


def arrays(seg) -> dict[str, np.ndarray]:
    """Probability, uncertainty (KJI copies) and the segment exported on the reference grid."""
    probability, uncertainty = results.output_volumes(seg)
    reference = seg.GetNodeReference(results.INPUT_REFERENCE)
    return {"probability": np.array(slicer.util.arrayFromVolume(probability)),
            "uncertainty": np.array(slicer.util.arrayFromVolume(uncertainty)),
            "segment": segments.segment_on_grid(seg, TUMOR.segment_id, geometry.ijk_to_ras(reference),
                                                geometry.dimensions(reference))}


def voxel_world(node, kji) -> tuple[float, float, float]:
    """World RAS (mm) of voxel centre ``kji`` of ``node`` (its IJK→RAS, then its parent transform)."""
    local = ijk_to_ras(node) @ np.array([kji[2], kji[1], kji[0], 1.0])
    to_world = vtk.vtkGeneralTransform()
    slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(node.GetParentTransformNode(), None, to_world)
    return tuple(to_world.TransformPoint(list(local[:3])))


def pick(before, tumour: bool) -> tuple[int, int, int]:
    """A voxel (KJI) inside the brain of the slice with the most tumour: tumour or clearly not tumour."""
    counts = before["segment"].sum(axis=(1, 2))
    k = int(np.argmax(counts))
    wanted = before["segment"][k] if tumour else (before["probability"][k] == 0) & ~before["segment"][k]
    j, i = np.argwhere(wanted)[len(np.argwhere(wanted)) // 2]
    return k, int(j), int(i)


def test_staged_entropy_is_the_engines_binary_entropy():
    """The staged previous result's entropy (computed only where 0 < p < 1) equals the engine's definition."""
    import torch
    from DiffSegExtension.ensemble import binary_entropy

    p = np.random.default_rng(0).integers(0, 7, size=(5, 6, 7)).astype(np.float32) / 6  # 6 members: 0, 1/6 … 1
    p[0, 0, :3] = (0.0, 1.0, 0.5)
    staged = refinerecord.entropy_bits(p)
    assert staged.dtype == np.float32 and staged.shape == p.shape
    np.testing.assert_allclose(staged, binary_entropy(torch.from_numpy(p)).numpy(), atol=1e-6)
    assert staged[0, 0, 0] == 0 and staged[0, 0, 1] == 0 and staged[0, 0, 2] == 1


def test_include_point_makes_its_voxel_tumour_in_the_same_nodes(harness, refined_case):
    logic, volumes, seg, _, results_root = refined_case
    probability, uncertainty = results.output_volumes(seg)
    before = arrays(seg)
    kji = pick(before, tumour=False)
    nodes = harness.node_ids()
    out = logic.refine(seg, include=[voxel_world(volumes["flair"], kji)])
    after = arrays(seg)
    assert out.segmentation is seg and results.output_volumes(seg) == (probability, uncertainty)
    assert harness.node_ids() == nodes  # updated in place, nothing added
    assert not before["segment"][kji] and after["segment"][kji]
    assert after["probability"][kji] == 1.0 and after["uncertainty"][kji] == 0.0
    # Only the slices the point's 3 mm ball touches (at most its own and the two beside it) were sampled
    # again; beyond them the point's evidence moved only voxels the members disagreed on, upwards.
    changed = after["probability"] != before["probability"]
    beyond = (np.abs(np.arange(changed.shape[0]) - kji[0]) > 1)[:, None, None] & changed
    was = before["probability"][beyond]
    assert beyond.any() and np.all((was > 0) & (was < 1)) and np.all(after["probability"][beyond] > was)
    assert logic.can_undo_refine(seg)
    assert {p.parent for p in (refinerecord.record_of(seg), refinerecord.undo_of(seg))} == {results_root}


def test_console_reach_zero_keeps_the_slices_beyond_the_ball_exactly(harness, refined_case):
    logic, volumes, seg, _, _ = refined_case
    before = arrays(seg)
    kji = pick(before, tumour=True)
    with pytest.raises(Exception, match="reach of a point must be 0 mm or more"):
        logic.refine(seg, exclude=[voxel_world(volumes["flair"], kji)], reach_mm=-1)
    logic.refine(seg, exclude=[voxel_world(volumes["flair"], kji)], reach_mm=0)
    after = arrays(seg)
    beyond = np.abs(np.arange(after["probability"].shape[0]) - kji[0]) > 1
    assert not after["segment"][kji]
    for name in before:
        assert np.array_equal(after[name][beyond], before[name][beyond]), name
    logic.undo_refine(seg)


def test_exclude_point_removes_tumour_and_undo_restores_exactly(harness, refined_case):
    logic, volumes, seg, _, results_root = refined_case
    before = arrays(seg)
    bookkeeping = (refinerecord.RUN_FOLDER_ATTRIBUTE, refinerecord.UNDO_FOLDER_ATTRIBUTE, refinerecord.MAPS_ATTRIBUTE)
    attributes = {n: seg.GetAttribute(n) for n in seg.GetAttributeNames() if n not in bookkeeping}
    record = refinerecord.record_of(seg)
    kji = pick(before, tumour=True)
    logic.refine(seg, exclude=[voxel_world(volumes["flair"], kji)])
    refined = arrays(seg)
    assert before["segment"][kji] and not refined["segment"][kji] and refined["probability"][kji] == 0.0
    logic.undo_refine(seg)
    undone = arrays(seg)
    for name in before:
        assert np.array_equal(undone[name], before[name]), name
    assert {n: seg.GetAttribute(n) for n in attributes} == attributes
    assert not logic.can_undo_refine(seg)  # one step
    with pytest.raises(Exception, match="no refinement to undo"):
        logic.undo_refine(seg)
    # The result's record is the undo folder (a copy of the first record: no guidance yet); the first record
    # and the refined one are gone, so one folder is left.
    assert refinerecord.record_of(seg) is not None and not (refinerecord.record_of(seg) / "guidance.json").exists()
    assert not record.exists() and list(results_root.iterdir()) == [refinerecord.record_of(seg)]


def test_cancelled_and_failed_refinements_leave_the_scene_untouched(harness, refined_case):
    logic, volumes, seg, temp_root, results_root = refined_case
    snapshot, items, kept = harness.snapshot(), harness.hierarchy_items(), sorted(results_root.iterdir())
    inside = voxel_world(volumes["flair"], pick(arrays(seg), tumour=False))
    handle = logic.start(logic.refine_request(seg, include=[inside]))
    logic.cancel(handle)
    with pytest.raises(DiffSegCancelled):
        logic.finish(handle)
    far = tuple(v + 1000.0 for v in inside)  # outside the volume: the engine refuses it
    with pytest.raises(DiffSegRunError, match="outside the input volume"):
        logic.refine(seg, include=[far])
    assert harness.snapshot() == snapshot and harness.hierarchy_items() == items
    assert list(temp_root.iterdir()) == [] and sorted(results_root.iterdir()) == kept
    assert not logic.can_undo_refine(seg)


def test_staging_copies_the_record_maps_while_the_volumes_are_unchanged(harness, refined_case, tmp_path):
    import nibabel as nib

    _, _, seg, _, _ = refined_case
    record = refinerecord.record_of(seg)
    assert (record / "probability.nii.gz").is_file(), "the run record keeps the engine's maps"
    copied = refinerecord.stage_previous(seg, record, tmp_path / "a")
    for name in ("probability.nii.gz", "uncertainty.nii.gz", "entropy.nii.gz"):
        assert (copied / name).read_bytes() == (record / name).read_bytes(), name
    probability, _ = results.output_volumes(seg)
    changed = np.array(slicer.util.arrayFromVolume(probability))
    changed[changed > 0] = 1.0 - changed[changed > 0] / 2
    slicer.util.updateVolumeFromArray(probability, changed)
    written = refinerecord.stage_previous(seg, record, tmp_path / "b")
    on_disk = np.asarray(nib.load(written / "probability.nii.gz").dataobj).transpose(2, 1, 0)
    np.testing.assert_array_equal(on_disk, changed, "a changed volume is written from the scene")
    np.testing.assert_allclose(np.asarray(nib.load(written / "entropy.nii.gz").dataobj).transpose(2, 1, 0),
                               refinerecord.entropy_bits(changed), atol=1e-6)
    assert (written / "uncertainty.nii.gz").read_bytes() == (record / "uncertainty.nii.gz").read_bytes()


def test_refine_needs_guidance_and_a_run_record(harness, refined_case):
    logic, _, seg, _, _ = refined_case
    assert any("needs guidance" in p for p in logic.problems(logic.refine_request(seg)))
    seg.SetAttribute(refinerecord.RUN_FOLDER_ATTRIBUTE, "")
    assert any("no run record" in p for p in logic.problems(logic.refine_request(seg, include=[(0.0, 0.0, 0.0)])))


def test_point_under_a_parent_transform_hits_the_voxel_at_its_world_position(harness, tmp_path, engine_model):
    """Inputs (oblique grid) under a translation + rotation: the point is given in world RAS and lands on the
    voxel shown there."""
    volumes = phantom_volumes(harness, tmp_path, engine_model)
    transform = harness.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "moved")
    matrix = slicer.util.vtkMatrixFromArray(np.array([[0.8, -0.6, 0, 12.0], [0.6, 0.8, 0, -7.5], [0, 0, 1, 30.0],
                                                      [0, 0, 0, 1.0]]))
    transform.SetMatrixTransformToParent(matrix)
    for node in volumes.values():
        node.SetAndObserveTransformNodeID(transform.GetID())
    logic = DiffSegLogic(scene=harness.scene, temp_root=tmp_path / "temp", results_root=tmp_path / "results")
    (tmp_path / "temp").mkdir()
    seg, _ = logic.run(run_request(engine_model, volumes))
    before = arrays(seg)
    kji = pick(before, tumour=False)
    world = voxel_world(volumes["flair"], kji)
    assert np.linalg.norm(np.subtract(world, (ijk_to_ras(volumes["flair"]) @ [*kji[::-1], 1])[:3])) > 10
    logic.refine(seg, include=[world])
    after = arrays(seg)
    assert after["segment"][kji] and after["probability"][kji] == 1.0


def test_strokes_from_a_label_map_and_from_segment_edits(harness, refined_case):
    logic, volumes, seg, _, _ = refined_case
    before = arrays(seg)
    k, j, i = pick(before, tumour=False)
    strokes = harness.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "strokes")
    painted = np.zeros_like(before["segment"], dtype=np.uint8)
    painted[k, j - 1:j + 2, i - 1:i + 2] = 1
    slicer.util.updateVolumeFromArray(strokes, painted)
    strokes.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(ijk_to_ras(volumes["flair"])))
    logic.refine(seg, strokes=strokes)
    assert arrays(seg)["segment"][painted == 1].all()

    # Erase a tumour voxel in the segment (as the Segment Editor would) and refine with the edits.
    tumour = pick(arrays(seg), tumour=True)
    edited = arrays(seg)["segment"].astype(np.uint8)
    edited[tumour] = 0
    reference = volumes["flair"]
    segments.write_label_map(seg, edited, geometry.ijk_to_ras(reference), ("wt",))
    logic.refine(seg, strokes=seg)
    after = arrays(seg)
    assert not after["segment"][tumour] and after["probability"][tumour] == 0.0
    assert after["segment"][painted == 1].all()  # the earlier strokes are kept (guidance accumulates)
