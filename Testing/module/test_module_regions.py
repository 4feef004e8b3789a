"""Region results (whole tumour ⊇ tumour core ⊇ enhancing tumour) on real MRML nodes.

The engine is the real one (``python -m DiffSegExtension segment`` in a child process) with the shared
``tiny_region_run`` model (FLAIR required, T1ce and T2 optional; trained for a few iterations: these
tests check the plumbing, not its quality). Inputs are phantom NIfTI files with an oblique,
non-isotropic affine.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage
import slicer
import vtk
from conftest import ijk_to_ras, write_case

from DiffSegLib import geometry, refinerecord, regions, results, review, segments
from DiffSegLib.logic import DiffSegLogic, RunRequest
from DiffSegLib.models import read_model_card

pytestmark = pytest.mark.slow

SPECS = (regions.EDEMA, regions.NECROTIC_CORE, regions.ENHANCING)


@pytest.fixture(scope="module")
def region_model(tiny_region_run):
    return read_model_card(tiny_region_run)


@pytest.fixture
def case(harness, tmp_path, region_model):
    files = write_case(tmp_path / "data", seed=5)
    volumes = {m: harness.load_volume(files[m], f"case5_{m}") for m in region_model.modalities}
    temp_root = tmp_path / "temp-root"
    temp_root.mkdir()
    return volumes, DiffSegLogic(scene=harness.scene, temp_root=temp_root)


def _request(model, volumes, **kw) -> RunRequest:
    kw.setdefault("members", 3)
    kw.setdefault("steps", 2)
    kw.setdefault("device", "cpu")
    return RunRequest(model, dict(volumes), **kw)


def segment_arrays(harness, segmentation) -> dict[str, np.ndarray]:
    """Each segment exported through a labelmap node on the input's grid (KJI, 0/1)."""
    reference = segmentation.GetNodeReference(results.INPUT_REFERENCE)
    arrays = {}
    content = segmentation.GetSegmentation()
    for i in range(content.GetNumberOfSegments()):
        segment_id = content.GetNthSegmentID(i)
        labelmap = harness.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "export")
        assert slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentation, [segment_id], labelmap, reference)
        arrays[segment_id] = np.array(slicer.util.arrayFromVolume(labelmap)) > 0
        results.remove_node(harness.scene, labelmap)
    return arrays


def labels_from_segments(arrays) -> np.ndarray:
    out = np.zeros(next(iter(arrays.values())).shape, np.uint8)
    for spec in SPECS:
        assert not (out[arrays[spec.segment_id]]).any(), "segments overlap"
        out[arrays[spec.segment_id]] = spec.label
    return out


def nifti_kji(path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj).transpose(2, 1, 0)


def test_region_run_gives_named_segments_and_per_region_volumes_on_the_input_grid(harness, region_model, case, tmp_path):
    volumes, logic = case
    kept = tmp_path / "engine-out"
    result = logic.run(_request(region_model, volumes, keep_engine_outputs=kept))
    seg, unc = result  # unpacks as before regions: the whole tumour's uncertainty
    flair = volumes["flair"]
    assert result.regions == ("wt", "tc", "et") and unc is result.uncertainties["wt"]
    assert set(result.probabilities) == set(result.uncertainties) == {"wt", "tc", "et"}
    content = seg.GetSegmentation()
    assert [content.GetNthSegmentID(i) for i in range(content.GetNumberOfSegments())] == \
        ["Edema", "NecroticCore", "Enhancing"]
    for spec in SPECS:
        segment = content.GetSegment(spec.segment_id)
        assert segment.GetName() == spec.name and np.allclose(segment.GetColor(), spec.color)
        terminology = vtk.reference("")
        assert segment.GetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), terminology)
        assert str(terminology) == spec.terminology
    assert "SCT^79654002^Edema" in regions.EDEMA.terminology and "SCT^6574001^Necrosis" in regions.NECROTIC_CORE.terminology
    assert seg.GetNodeReference(seg.GetReferenceImageGeometryReferenceRole()) is flair
    # Label values → segments, voxel for voxel.
    engine_labels = nifti_kji(kept / "segmentation.nii.gz")
    assert set(np.unique(engine_labels)) <= {0, 1, 2, 4}
    assert np.array_equal(labels_from_segments(segment_arrays(harness, seg)), engine_labels)
    # Every region's volumes: the engine's values, the oblique input's IJK→RAS, in the input's study.
    hierarchy = harness.scene.GetSubjectHierarchyNode()
    assert not np.allclose(ijk_to_ras(flair)[:3, :3], np.diag(np.diag(ijk_to_ras(flair)[:3, :3])))
    for region in result.regions:
        for kind, node in (("probability", result.probabilities[region]), ("uncertainty", result.uncertainties[region])):
            expected = nifti_kji(kept / f"{regions.output_key(kind, region)}.nii.gz")
            assert np.array_equal(slicer.util.arrayFromVolume(node), expected)
            assert np.array_equal(ijk_to_ras(node), ijk_to_ras(flair))
            assert node.GetAttribute(results.REGION_ATTRIBUTE) == region
            assert regions.REGION_TITLES[region].lower() in node.GetName()
            assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(node)) == harness.study
        assert review.threshold_of(seg, region) == 0.5
    assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(seg)) == harness.study
    # The engine's label map is the nested region masks at 0.5, as the module rebuilds it.
    probabilities = {r: slicer.util.arrayFromVolume(result.probabilities[r]) for r in result.regions}
    assert np.array_equal(regions.label_map_at(probabilities, review.thresholds_of(seg)), engine_labels)
    assert json.loads((kept / "summary.json").read_text())["modalities_used"] == ["flair", "t1ce", "t2"]


def test_per_region_threshold_changes_only_its_region_and_keeps_nesting(harness, region_model, case):
    volumes, logic = case
    result = logic.run(_request(region_model, volumes))
    seg = result.segmentation
    # Designed probabilities (deliberately not nested) make every threshold matter: WT rises along i,
    # TC along j, ET is a blob that reaches outside WT and TC.
    shape = slicer.util.arrayFromVolume(result.probabilities["wt"]).shape
    k, j, i = np.meshgrid(*(np.linspace(0, 1, n) for n in shape), indexing="ij")
    designed = {"wt": i, "tc": j, "et": np.exp(-((i - 0.3) ** 2 + (j - 0.7) ** 2) / 0.05) * (k > 0.2)}
    for region, values in designed.items():
        slicer.util.updateVolumeFromArray(result.probabilities[region], values.astype(np.float32))

    def expected(thresholds):
        et = designed["et"] >= thresholds["et"]
        tc = (designed["tc"] >= thresholds["tc"]) | et
        wt = (designed["wt"] >= thresholds["wt"]) | tc
        return wt, tc, et

    thresholds = {"wt": 0.5, "tc": 0.5, "et": 0.5}
    previous = None
    for region, value in (("et", 0.3), ("tc", 0.8), ("wt", 0.2), ("et", 0.9)):
        review.apply_threshold(seg, value, region)
        thresholds[region] = value
        assert review.thresholds_of(seg) == thresholds
        arrays = segment_arrays(harness, seg)
        wt, tc, et = expected(thresholds)
        assert np.array_equal(arrays["Enhancing"], et)
        assert np.array_equal(arrays["NecroticCore"], tc & ~et)
        assert np.array_equal(arrays["Edema"], wt & ~tc)
        if previous is not None:  # only the thresholded region's own mask (and what nesting adds) moved
            changed = labels_from_segments(arrays) != previous
            own = (designed[region] >= value) != (designed[region] >= last[region])
            assert changed.any() and not (changed & ~own).any()
        previous, last = labels_from_segments(arrays), dict(thresholds)
    with pytest.raises(ValueError, match="no region 'xx'"):
        review.apply_threshold(seg, 0.5, "xx")
    # Ranking per region: only slices where that region's probability is positive.
    axis = 2 - review.slice_axis_of(seg)
    for region in result.regions:
        ranked = review.rank_slices(seg, region=region)
        positive = np.moveaxis(designed[region] > 0, axis, 0).reshape(shape[axis], -1).any(axis=1)
        assert sorted(r.index for r in ranked) == list(np.nonzero(positive)[0])


def test_optional_sequences_may_stay_empty_and_are_not_sent(harness, region_model, case):
    volumes, logic = case
    # As the engine's training wrote the card.
    assert region_model.required_modalities == ("flair",) and region_model.optional_modalities == ("t1ce", "t2")
    request = _request(region_model, {"flair": volumes["flair"], "t1ce": None, "t2": None})
    assert logic.problems(request) == [] and request.inputs == {"flair": volumes["flair"]}
    handle = logic.start(request)
    command = handle.runner.args
    assert "--flair" in command and "--t1ce" not in command and "--t2" not in command
    while handle.running:
        handle.poll()
    handle.poll()
    result = logic.finish(handle)
    assert result.regions == ("wt", "tc", "et")
    missing = _request(region_model, {"t2": volumes["t2"]})
    assert logic.problems(missing)[0] == (f"Select a volume for FLAIR (the model '{region_model.title}' needs FLAIR; "
                                          "T1ce (contrast), T2 optional).")


def test_rerun_here_merges_every_region(harness, region_model, case, tmp_path):
    volumes, logic = case
    result = logic.run(_request(region_model, volumes, seed=1))
    seg = result.segmentation
    review.apply_threshold(seg, 0.4, "tc")
    before = {r: np.array(slicer.util.arrayFromVolume(result.probabilities[r])) for r in result.regions}
    reference = volumes["flair"]
    axis = geometry.slice_axis(reference)
    n = geometry.dimensions(reference)[axis]
    slab = (n // 2 - 1, n // 2 + 2)
    kept = tmp_path / "rerun"
    request = logic.rerun_request(seg, slices=slab, members=4, steps=2, device="cpu")
    request.keep_engine_outputs = kept
    ids = harness.node_ids()
    merged = logic.run(request)
    assert merged.segmentation is seg and harness.node_ids() == ids
    inside = np.zeros(n, dtype=bool)
    inside[slab[0]:slab[1]] = True
    np_axis = 2 - axis
    for region in result.regions:
        for kind, nodes in (("probability", merged.probabilities), ("uncertainty", merged.uncertainties)):
            node = nodes[region]
            now = np.moveaxis(slicer.util.arrayFromVolume(node), np_axis, 0)
            engine = np.moveaxis(nifti_kji(kept / f"{regions.output_key(kind, region)}.nii.gz"), np_axis, 0)
            assert np.array_equal(now[inside], engine[inside])
            if kind == "probability":
                assert np.array_equal(now[~inside], np.moveaxis(before[region], np_axis, 0)[~inside])
    probabilities = {r: slicer.util.arrayFromVolume(merged.probabilities[r]) for r in merged.regions}
    assert review.thresholds_of(seg) == {"wt": 0.5, "tc": 0.4, "et": 0.5}
    assert np.array_equal(labels_from_segments(segment_arrays(harness, seg)),
                          regions.label_map_at(probabilities, review.thresholds_of(seg)))


def test_console_api_returns_every_regions_volumes(harness, region_model, case):
    volumes, _ = case
    logic = DiffSegLogic(scene=harness.scene)
    result = logic.segment(flair=volumes["flair"], t2=volumes["t2"], model=str(region_model.path), members=2,
                           steps=2, device="cpu")
    seg, unc = result
    assert seg is result.segmentation and seg.GetAttribute(regions.REGIONS_ATTRIBUTE) == "wt,tc,et"
    assert unc is result.uncertainties["wt"] is results.output_volumes(seg)[1]
    assert result.probabilities["et"] is results.output_volumes(seg, "et")[0]
    # A second call on the same inputs updates the same nodes.
    again = logic.segment(flair=volumes["flair"], t2=volumes["t2"], model=str(region_model.path), members=2,
                          steps=2, device="cpu", seed=3)
    assert [n.GetID() for n in (*again, *again.probabilities.values())] == \
        [n.GetID() for n in (*result, *result.probabilities.values())]
    # The same inputs with a whole-tumour result stored on them: the region segments and volumes go.
    region_volumes = [result.probabilities["tc"], result.uncertainties["et"]]
    wt_only = results.EngineOutputs(_label_node(seg, np.uint8), {"wt": _copy(result.probabilities["wt"])},
                                    {"wt": _copy(result.uncertainties["wt"])}, {})
    stored = results.store_outputs(harness.scene, volumes["flair"], seg.GetAttribute(results.KEY_ATTRIBUTE), wt_only,
                                   {}, segmentation=seg)
    assert stored.regions == ("wt",) and all(node.GetScene() is None for node in region_volumes)
    content = seg.GetSegmentation()
    assert [content.GetNthSegmentID(i) for i in range(content.GetNumberOfSegments())] == ["Tumor"]


def _copy(node):
    from DiffSegLib import volumeio

    return volumeio.detached_volume(volumeio.image_from_array(np.array(volumeio.array_kji(node))),
                                    geometry.ijk_to_ras(node))


def _label_node(segmentation, dtype):
    from DiffSegLib import volumeio

    reference = segmentation.GetNodeReference(results.INPUT_REFERENCE)
    labels = (np.array(volumeio.array_kji(results.output_volumes(segmentation)[0])) >= 0.5).astype(dtype)
    return volumeio.detached_volume(volumeio.image_from_array(labels), geometry.ijk_to_ras(reference))


def test_label_values_become_segments_exactly(harness, volumes):
    """All four BraTS values on the oblique input grid; unknown values belong to no segment."""
    flair = volumes["flair"]
    shape = tuple(reversed(geometry.dimensions(flair)))
    rng = np.random.default_rng(0)
    labels = rng.choice(np.array([0, 1, 2, 4, 3], np.uint8), size=shape, p=[0.4, 0.15, 0.2, 0.15, 0.1])
    seg = harness.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "labels")
    seg.CreateDefaultDisplayNodes()
    seg.SetNodeReferenceID(results.INPUT_REFERENCE, flair.GetID())
    seg.SetReferenceImageGeometryParameterFromVolumeNode(flair)
    segments.write_label_map(seg, labels, geometry.ijk_to_ras(flair), ("wt", "tc", "et"))
    arrays = segment_arrays(harness, seg)
    for spec in SPECS:
        assert np.array_equal(arrays[spec.segment_id], labels == spec.label), spec.name
    segments.write_label_map(seg, labels, geometry.ijk_to_ras(flair), ("wt", "tc"))
    arrays = segment_arrays(harness, seg)
    assert set(arrays) == {"Edema", "TumorCore"} and np.array_equal(arrays["TumorCore"], labels == 1)


@pytest.mark.parametrize("pad", [0, 9])
def test_the_component_rule_is_the_engines(pad):
    """Segments at the engine's thresholds lose exactly the components the engine's mask loses; with ``pad`` the
    blobs lie inside a larger, otherwise empty volume (the module works on their box only)."""
    from DiffSegExtension.components import drop_unlikely_components

    rng = np.random.default_rng(3)
    grid = np.indices((24, 20, 10))
    p_wt = np.zeros(grid.shape[1:], np.float32)
    for level, centre in zip((0.95, 0.85, 0.72, 0.62, 0.55), ((5, 5, 3), (18, 5, 5), (6, 15, 6), (18, 15, 4), (12, 10, 8))):
        blob = ((grid - np.array(centre)[:, None, None, None]) ** 2).sum(axis=0) <= 6
        p_wt[blob] = np.clip(level + rng.normal(0, 0.1, blob.sum()), 0, 1)
    p_wt = np.round(p_wt * 6) / 6  # six members
    p_tc = (p_wt * (rng.random(p_wt.shape) < 0.7)).astype(np.float32)
    keep = np.zeros(p_wt.shape, bool)
    keep[tuple(np.argwhere(p_wt >= 0.5)[0])] = True
    p_wt, p_tc, keep = (np.pad(a, ((pad, 2 * pad), (pad, 0), (3 * pad, pad))) for a in (p_wt, p_tc, keep))
    empty = regions.label_map_at({"wt": np.zeros_like(p_wt), "tc": np.zeros_like(p_tc)}, {"wt": 0.5, "tc": 0.5}, 0.7)
    assert empty.shape == p_wt.shape and not empty.any()
    removed = []
    for min_mean in (0.0, 0.6, 0.7, 0.8):
        masks = np.stack([p_wt >= 0.5, p_tc >= 0.5]).astype(np.uint8)
        assert ndimage.label(masks[0])[1] > 2, "several components to judge"
        removed.append(drop_unlikely_components(masks, p_wt, min_mean, keep=keep))
        labels = regions.label_map_at({"wt": p_wt, "tc": p_tc}, {"wt": 0.5, "tc": 0.5}, min_mean, keep)
        np.testing.assert_array_equal(regions.region_mask(labels, "wt"), masks[0] > 0, str(min_mean))
        np.testing.assert_array_equal(regions.region_mask(labels, "tc"), masks[1] > 0, str(min_mean))
    assert removed[0] == 0 and len(set(removed)) >= 3, f"thresholds that remove different components: {removed}"


def test_segments_drop_blobs_the_ensemble_does_not_back_unless_guidance_marks_them(harness, region_model, case):
    volumes, logic = case
    result = logic.run(_request(region_model, volumes))
    seg = result.segmentation
    shape = slicer.util.arrayFromVolume(result.probabilities["wt"]).shape
    designed = np.zeros(shape, np.float32)
    designed[2:5, 3:9, 3:9] = 0.9  # backed by most members
    designed[-5:-2, -9:-3, -9:-3] = 0.6  # a blob 60 % of the members find
    for region, values in (("wt", designed), ("tc", np.zeros(shape, np.float32)), ("et", np.zeros(shape, np.float32))):
        slicer.util.updateVolumeFromArray(result.probabilities[region], values)

    def whole_tumour():
        review.apply_threshold(seg, 0.5, "wt")
        return segment_arrays(harness, seg)["Edema"]

    assert review.min_component_of(seg) == 0.0, "the tiny model's card keeps every component"
    assert np.array_equal(whole_tumour(), designed >= 0.5)
    seg.SetAttribute(regions.MIN_COMPONENT_ATTRIBUTE, "0.7")
    assert np.array_equal(whole_tumour(), designed == 0.9), "the weak blob left the segments"
    assert slicer.util.arrayFromVolume(result.probabilities["wt"]).max() == np.float32(0.9)
    k, j, i = shape[0] - 3, shape[1] - 5, shape[2] - 5  # inside the weak blob
    ras = geometry.ijk_to_ras(seg.GetNodeReference(results.INPUT_REFERENCE)) @ np.array([i, j, k, 1.0])
    record = refinerecord.record_of(seg)
    (record / "guidance.json").write_text(json.dumps({"format": 1, "strokes": {},
                                                      "points": [{"kind": "include", "ras_mm": list(ras[:3])}]}))
    assert np.array_equal(whole_tumour(), designed >= 0.5), "an include point keeps its blob"
