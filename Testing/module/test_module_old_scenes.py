"""Scenes saved before tumour regions existed still load and review.

The scene is built the way the module built it before regions, with literal names (not the module's
current helpers): one "Tumor" segment, the ``DiffSegProbability`` / ``DiffSegUncertainty`` /
``DiffSegInput`` references, a ``DiffSeg.Threshold`` attribute and no ``DiffSeg.Regions``. It is saved
as ``.mrb``, read into a fresh scene, and reviewed with today's code.
"""

from __future__ import annotations

import types

import numpy as np
import slicer
from conftest import ijk_to_ras

from DiffSegLib import geometry, results, review
from DiffSegLib.logic import DiffSegLogic
from DiffSegLib.panel import PanelController
from DiffSegLib.regions import regions_of

OLD_TERMINOLOGY = ("Segmentation category and type - DICOM master list"
                   "~SCT^49755003^Morphologically Altered Structure~SCT^108369006^Neoplasm~^^"
                   "~Anatomic codes - DICOM master list~SCT^12738006^Brain~^^")


def build_old_result(scene, flair) -> tuple:
    """A DiffSeg result as saved before regions; returns (segmentation, probability array KJI)."""
    shape = slicer.util.arrayFromVolume(flair).shape
    k, j, i = np.meshgrid(*(np.linspace(0, 1, n) for n in shape), indexing="ij")
    probability = np.clip(1.2 - 2.0 * np.sqrt((i - 0.5) ** 2 + (j - 0.5) ** 2 + (k - 0.5) ** 2), 0, 1)
    probability = (np.round(probability * 5) / 5).astype(np.float32)
    key = f"flair={flair.GetID()}"
    volumes = {}
    for role, values in (("probability", probability), ("uncertainty", probability * (1 - probability))):
        node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", f"{flair.GetName()} DiffSeg {role}")
        node.CreateDefaultDisplayNodes()
        node.SetIJKToRASMatrix(geometry.vtk_matrix(ijk_to_ras(flair)))
        slicer.util.updateVolumeFromArray(node, values.astype(np.float32))
        node.SetAttribute("DiffSeg.Role", role)
        node.SetAttribute("DiffSeg.InputKey", key)
        node.SetNodeReferenceID("DiffSegInput", flair.GetID())
        volumes[role] = node
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{flair.GetName()} DiffSeg")
    segmentation.CreateDefaultDisplayNodes()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(flair)
    for name, value in (("Role", "segmentation"), ("InputKey", key), ("Threshold", "0.5"), ("Model", "brats-flair"),
                        ("SliceAxis", str(geometry.slice_axis(flair)))):
        segmentation.SetAttribute(f"DiffSeg.{name}", value)
    segmentation.SetNodeReferenceID("DiffSegInput", flair.GetID())
    segmentation.SetNodeReferenceID("DiffSegProbability", volumes["probability"].GetID())
    segmentation.SetNodeReferenceID("DiffSegUncertainty", volumes["uncertainty"].GetID())
    content = segmentation.GetSegmentation()
    content.AddEmptySegment("Tumor", "Tumor", (0.35, 0.85, 0.45))
    content.GetSegment("Tumor").SetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), OLD_TERMINOLOGY)
    mask = slicer.vtkOrientedImageData()
    mask.ShallowCopy(_image((probability >= 0.5).astype(np.uint8)))
    mask.SetImageToWorldMatrix(geometry.vtk_matrix(ijk_to_ras(flair)))
    assert slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        mask, segmentation, "Tumor", slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
    return segmentation, probability


def _image(values):
    from DiffSegLib.volumeio import image_from_array

    return image_from_array(values)


def tumor_mask(scene, segmentation) -> np.ndarray:
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "export")
    assert slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
        segmentation, ["Tumor"], labelmap, segmentation.GetNodeReference("DiffSegInput"))
    mask = np.array(slicer.util.arrayFromVolume(labelmap)) > 0
    results.remove_node(scene, labelmap)
    return mask


def test_a_scene_saved_before_regions_loads_and_reviews(harness, volumes, tmp_path, parameter_class):
    old, probability = build_old_result(harness.scene, volumes["flair"])
    assert np.array_equal(tumor_mask(harness.scene, old), probability >= 0.5)
    with harness.reloaded_from_mrb(tmp_path) as scene:
        segmentation = results.find_outputs(scene, old.GetAttribute("DiffSeg.InputKey"))
        assert segmentation is not None and regions_of(segmentation) == ("wt",)
        loaded = results.SegmentationResult(segmentation)
        seg, unc = loaded
        assert seg is segmentation and loaded.regions == ("wt",) and unc.GetName() == "case0_flair DiffSeg uncertainty"
        assert np.array_equal(slicer.util.arrayFromVolume(loaded.probabilities["wt"]), probability)
        # The live threshold rewrites the one "Tumor" segment; nothing else appears.
        review.apply_threshold(segmentation, 0.3)
        content = segmentation.GetSegmentation()
        assert content.GetNumberOfSegments() == 1 and content.GetSegment("Tumor").GetName() == "Tumor"
        assert np.array_equal(tumor_mask(scene, segmentation), probability >= 0.3)
        assert segmentation.GetAttribute("DiffSeg.Threshold") == "0.3"
        assert review.rank_slices(segmentation)
        # The panel reviews it as a whole-tumour result: no region selector, its threshold on the slider.
        views = []
        dialogs = types.SimpleNamespace(confirm=lambda text: True, error=views.append, choose_folder=lambda: "")
        controller = PanelController(DiffSegLogic(scene=scene), parameter_class, dialogs, views.append)
        controller.enter()
        controller.params.outputSegmentation = segmentation
        view = views[-1]
        assert not view.region_visible and view.regions == (("Whole tumor", "wt"),) and view.ranking
        assert controller.params.threshold == 0.3
        controller.params.threshold = 0.7
        controller.threshold_settled()
        assert np.array_equal(tumor_mask(scene, segmentation), probability >= 0.7)
        controller.cleanup()
        # Removing it removes its volumes too.
        before = scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
        results.remove_outputs(scene, segmentation)
        assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == before - 2
