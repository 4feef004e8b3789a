"""Engine outputs → scene nodes: the segmentation and, per tumour region, uncertainty and probability.

Outputs of one set of inputs are recognised by the attribute ``DiffSeg.InputKey`` (the modality →
input node ID map), so a second run on the same inputs *updates* the same nodes instead of adding
new ones. The segmentation node references each region's probability and uncertainty volume (saved
with the scene; the whole tumour's under the references used before regions existed, the inner
regions' with a ``_tc`` / ``_et`` suffix), which is what the review tools use after a scene is reloaded.

Reading happens into detached nodes first (:func:`load_engine_outputs`); only when every file
was read and matches the reference grid is the scene touched (:func:`store_outputs`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import vtk

import slicer

from . import geometry, segments, volumeio
from .regions import (REGION_TITLES, REGIONS, REGIONS_ATTRIBUTE, check_regions, output_key, probability_reference,
                      regions_of, uncertainty_reference)

ROLE_ATTRIBUTE = "DiffSeg.Role"
KEY_ATTRIBUTE = "DiffSeg.InputKey"
REGION_ATTRIBUTE = "DiffSeg.Region"
INPUT_REFERENCE = "DiffSegInput"

#: Variance of binary members is at most 0.25 (half the members say yes): a fixed display range
#: makes colours comparable between cases and runs.
UNCERTAINTY_RANGE = (0.0, 0.25)
FOREGROUND_OPACITY = 0.5
#: Slicer's perceptual colour tables, preferred in this order (file-based, present in Slicer).
PERCEPTUAL_COLOR_IDS = ("vtkMRMLColorTableNodeFileInferno.txt", "vtkMRMLColorTableNodeFileViridis.txt")
FALLBACK_COLOR_NAME = "DiffSeg Inferno"
#: matplotlib's inferno at 17 evenly spaced points (used only where Slicer's colour files are absent).
_INFERNO = [(0.001, 0.0, 0.014), (0.042, 0.028, 0.141), (0.129, 0.047, 0.291), (0.238, 0.037, 0.396),
            (0.342, 0.062, 0.429), (0.441, 0.099, 0.432), (0.541, 0.135, 0.415), (0.64, 0.171, 0.381),
            (0.736, 0.216, 0.33), (0.822, 0.275, 0.266), (0.894, 0.353, 0.194), (0.947, 0.449, 0.115),
            (0.978, 0.558, 0.035), (0.988, 0.675, 0.065), (0.975, 0.798, 0.206), (0.948, 0.917, 0.411),
            (0.988, 0.998, 0.645)]


def input_key(volumes: Mapping[str, object]) -> str:
    """Identity of a set of inputs: ``"flair=vtkMRMLScalarVolumeNode1;t1=..."``."""
    return ";".join(f"{m}={node.GetID()}" for m, node in sorted(volumes.items()))


@dataclass
class EngineOutputs:
    """Engine results read into detached nodes, checked against the reference grid.

    ``segmentation``: the label map; ``probability`` / ``uncertainty``: region → volume node, in
    nesting order (``wt`` always first).
    """

    segmentation: object
    probability: dict
    uncertainty: dict
    summary: dict

    @property
    def regions(self) -> tuple[str, ...]:
        return tuple(self.probability)


def load_engine_outputs(outputs: Mapping[str, str], reference) -> EngineOutputs:
    """Read the engine's NIfTI outputs (every region's) and ``summary.json``; nothing is added to the scene. An output
    written on a box of the input grid (``--crop-outputs``) is placed on the whole grid, zero outside its box.

    :raises OSError: a file is missing/unreadable, or it does not lie on ``reference``'s grid.
    :raises ValueError: the outputs' regions are not nested (e.g. ET without TC).
    """
    regions = check_regions([r for r in REGIONS if r == "wt" or output_key("probability", r) in outputs])
    names = ["segmentation"] + [output_key(kind, r) for r in regions for kind in ("probability", "uncertainty")]
    nodes = {}
    for role in names:
        if role not in outputs:
            raise OSError(f"The engine did not report its '{role}' output.")
        node = volumeio.read_nifti(outputs[role])
        first = geometry.box_offset(node, reference)
        if first is None:
            raise OSError(f"The engine's {role} ({geometry.dimensions(node)} voxels) does not lie on the voxel grid "
                          f"of the input '{reference.GetName()}' ({geometry.dimensions(reference)} voxels).")
        if geometry.dimensions(node) != geometry.dimensions(reference):  # --crop-outputs: its box of the grid
            node.SetAndObserveImageData(volumeio.padded_image(node, geometry.dimensions(reference), first))
        node.SetIJKToRASMatrix(geometry.vtk_matrix(geometry.ijk_to_ras(reference)))
        nodes[role] = node
    summary = {}
    if outputs.get("summary") and Path(outputs["summary"]).is_file():
        summary = json.loads(Path(outputs["summary"]).read_text(encoding="utf-8"))
    return EngineOutputs(nodes["segmentation"], {r: nodes[output_key("probability", r)] for r in regions},
                         {r: nodes[output_key("uncertainty", r)] for r in regions}, summary)


class SegmentationResult(tuple):
    """What a run returns: the pair ``(segmentation, uncertainty)`` (the whole tumour's uncertainty, so
    ``seg, unc = logic.segment(...)`` works as before regions), with every region's volumes as attributes.

    :ivar segmentation: the segmentation node.
    :ivar regions: ``("wt",)`` or e.g. ``("wt", "tc", "et")``.
    :ivar probabilities: region → probability volume node.
    :ivar uncertainties: region → uncertainty (variance of the members) volume node.
    """

    def __new__(cls, segmentation):
        regions = regions_of(segmentation)
        volumes = {r: output_volumes(segmentation, r) for r in regions}
        result = super().__new__(cls, (segmentation, volumes["wt"][1]))
        result.segmentation = segmentation
        result.regions = regions
        result.probabilities = {r: pair[0] for r, pair in volumes.items()}
        result.uncertainties = {r: pair[1] for r, pair in volumes.items()}
        return result


# -- finding and removing previous outputs -------------------------------------------------------
def find_outputs(scene, key: str):
    """The segmentation node holding outputs for ``key`` (see :func:`input_key`), or None."""
    nodes = scene.GetNodesByClass("vtkMRMLSegmentationNode")
    for i in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(i)
        if node.GetAttribute(ROLE_ATTRIBUTE) == "segmentation" and node.GetAttribute(KEY_ATTRIBUTE) == key:
            return node
    return None


def output_volumes(segmentation, region: str = "wt"):
    """``(probability, uncertainty)`` volume nodes of ``region`` referenced by a DiffSeg segmentation node."""
    return (segmentation.GetNodeReference(probability_reference(region)),
            segmentation.GetNodeReference(uncertainty_reference(region)))


def remove_node(scene, node) -> None:
    """Remove a node together with its display and storage nodes (so nothing is left behind)."""
    if node is None or node.GetScene() is None:
        return
    extra = []
    if hasattr(node, "GetNumberOfDisplayNodes"):
        extra += [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
    if hasattr(node, "GetNumberOfStorageNodes"):
        extra += [node.GetNthStorageNode(i) for i in range(node.GetNumberOfStorageNodes())]
    scene.RemoveNode(node)
    for other in extra:
        if other is not None and other.GetScene() is not None:
            scene.RemoveNode(other)


def remove_outputs(scene, segmentation) -> None:
    """Remove a DiffSeg segmentation node and every region's volumes it references."""
    volumes = [node for region in regions_of(segmentation) for node in output_volumes(segmentation, region)]
    for node in (segmentation, *volumes):
        remove_node(scene, node)


# -- display ---------------------------------------------------------------------------------
def uncertainty_color_node(scene):
    """Slicer's Inferno (or Viridis) colour table; a DiffSeg copy of inferno where those are absent."""
    for node_id in PERCEPTUAL_COLOR_IDS:
        node = scene.GetNodeByID(node_id)
        if node is not None:
            return node
    existing = scene.GetFirstNodeByName(FALLBACK_COLOR_NAME)
    if existing is not None and existing.IsA("vtkMRMLColorTableNode"):
        return existing
    table = slicer.vtkMRMLColorTableNode()
    table.SetName(FALLBACK_COLOR_NAME)
    table.SetTypeToUser()
    table.SetNumberOfColors(256)
    points = np.array(_INFERNO)
    positions = np.linspace(0, 1, len(points))
    for i in range(256):
        rgb = [float(np.interp(i / 255.0, positions, points[:, c])) for c in range(3)]
        table.SetColor(i, "", *rgb, 1.0)
    return scene.AddNode(table)


def _style_uncertainty(scene, volume) -> None:
    display = volume.GetDisplayNode()
    display.SetAndObserveColorNodeID(uncertainty_color_node(scene).GetID())
    display.SetAutoWindowLevel(False)
    display.SetWindowLevelMinMax(*UNCERTAINTY_RANGE)
    # Voxels where all members agree stay transparent in the foreground layer.
    display.SetApplyThreshold(True)
    display.SetLowerThreshold(1e-6)
    display.SetUpperThreshold(1.0)


def _style_probability(volume) -> None:
    display = volume.GetDisplayNode()
    display.SetAutoWindowLevel(False)
    display.SetWindowLevelMinMax(0.0, 1.0)


def show_in_slice_views(scene, reference, uncertainty, opacity: float = FOREGROUND_OPACITY) -> None:
    """Reference as background (if the view shows nothing else), uncertainty as foreground."""
    composites = scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
    for i in range(composites.GetNumberOfItems()):
        composite = composites.GetItemAsObject(i)
        if not composite.GetBackgroundVolumeID():
            composite.SetBackgroundVolumeID(reference.GetID())
        composite.SetForegroundVolumeID(uncertainty.GetID())
        composite.SetForegroundOpacity(opacity)


# -- writing into the scene ---------------------------------------------------------------------
def _place_like(scene, node, reference) -> None:
    """Same parent transform and the same subject-hierarchy parent (study) as ``reference``."""
    node.SetAndObserveTransformNodeID(reference.GetTransformNodeID())
    hierarchy = scene.GetSubjectHierarchyNode()
    if hierarchy is None:
        return
    reference_item = hierarchy.GetItemByDataNode(reference)
    parent = hierarchy.GetItemParent(reference_item) if reference_item else hierarchy.GetSceneItemID()
    item = hierarchy.GetItemByDataNode(node)
    if item:
        hierarchy.SetItemParent(item, parent)
    else:
        hierarchy.CreateItem(parent, node)


def _set_volume(scene, node, name: str, image: vtk.vtkImageData, reference, role: str, key: str,
                style: Callable[[object], None]):
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
        node.CreateDefaultDisplayNodes()
    # Styled before the image arrives: a new display node's automatic window/level would otherwise compute a
    # histogram of the whole volume first (0.1 s per BraTS volume), only to be replaced by the fixed range.
    style(node)
    node.SetIJKToRASMatrix(geometry.vtk_matrix(geometry.ijk_to_ras(reference)))
    node.SetAndObserveImageData(image)
    node.SetAttribute(ROLE_ATTRIBUTE, role)
    node.SetAttribute(KEY_ATTRIBUTE, key)
    node.SetNodeReferenceID(INPUT_REFERENCE, reference.GetID())
    _place_like(scene, node, reference)
    return node


def _store_region(scene, segmentation, reference, key: str, results: EngineOutputs, region: str):
    """Create or update one region's probability and uncertainty volumes; returns them."""
    probability_node, uncertainty_node = output_volumes(segmentation, region) if segmentation else (None, None)
    title = f" ({REGION_TITLES[region].lower()})" if len(results.regions) > 1 else ""
    name = reference.GetName()
    probability_node = _set_volume(scene, probability_node, f"{name} DiffSeg probability{title}",
                                   results.probability[region].GetImageData(), reference,
                                   output_key("probability", region), key, _style_probability)
    uncertainty_node = _set_volume(scene, uncertainty_node, f"{name} DiffSeg uncertainty{title}",
                                   results.uncertainty[region].GetImageData(), reference,
                                   output_key("uncertainty", region), key, partial(_style_uncertainty, scene))
    for node in (probability_node, uncertainty_node):
        node.SetAttribute(REGION_ATTRIBUTE, region)
    return probability_node, uncertainty_node


def store_outputs(scene, reference, key: str, results: EngineOutputs, run_info: Mapping[str, object],
                  segmentation=None) -> SegmentationResult:
    """Put engine results into the scene; update ``segmentation``'s nodes if given.

    The segments are the engine's label map, value for value (see :mod:`.segments`); regions an earlier
    result on ``segmentation`` had and this one lacks lose their volumes.
    """
    stale = [r for r in (regions_of(segmentation) if segmentation else ()) if r not in results.regions]
    volumes = {r: _store_region(scene, segmentation, reference, key, results, r) for r in results.regions}
    if segmentation is None:
        segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{reference.GetName()} DiffSeg")
        segmentation.CreateDefaultDisplayNodes()
    for region in stale:
        for node in output_volumes(segmentation, region):
            remove_node(scene, node)
        segmentation.RemoveNodeReferenceIDs(probability_reference(region))
        segmentation.RemoveNodeReferenceIDs(uncertainty_reference(region))
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(reference)
    segmentation.SetAttribute(ROLE_ATTRIBUTE, "segmentation")
    segmentation.SetAttribute(KEY_ATTRIBUTE, key)
    segmentation.SetAttribute(REGIONS_ATTRIBUTE, ",".join(results.regions))
    segmentation.SetNodeReferenceID(INPUT_REFERENCE, reference.GetID())
    for region, (probability_node, uncertainty_node) in volumes.items():
        segmentation.SetNodeReferenceID(probability_reference(region), probability_node.GetID())
        segmentation.SetNodeReferenceID(uncertainty_reference(region), uncertainty_node.GetID())
    for attribute, value in run_info.items():
        segmentation.SetAttribute(f"DiffSeg.{attribute}", str(value))
    _place_like(scene, segmentation, reference)
    segments.write_label_map(segmentation, volumeio.array_kji(results.segmentation), geometry.ijk_to_ras(reference),
                             results.regions)
    show_in_slice_views(scene, reference, volumes["wt"][1])
    return SegmentationResult(segmentation)
