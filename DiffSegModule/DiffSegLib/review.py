"""Review tools on finished outputs: live threshold per region, slices ranked by uncertainty, merging a re-run.

All work on the nodes a DiffSeg segmentation references (see :mod:`results`), on the reference
grid, without resampling. Each region keeps its own threshold (``DiffSeg.Threshold``, ``_tc``, ``_et``);
the segments are always the label map of every region at its threshold, nesting enforced. MRML + numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import vtk

import slicer

from . import geometry, refinerecord, results, segments, volumeio
from .regions import DEFAULT_THRESHOLD, MIN_COMPONENT_ATTRIBUTE, label_map_at, regions_of, threshold_attribute

SLICE_AXIS_ATTRIBUTE = "DiffSeg.SliceAxis"
THRESHOLD_ATTRIBUTE = threshold_attribute("wt")


def reference_volume(segmentation):
    return segmentation.GetNodeReference(results.INPUT_REFERENCE)


def slice_axis_of(segmentation) -> int:
    """The voxel axis the engine sliced (from the run's summary), else the superior–inferior one."""
    value = segmentation.GetAttribute(SLICE_AXIS_ATTRIBUTE)
    if value not in (None, ""):
        return int(value)
    return geometry.slice_axis(reference_volume(segmentation))


def threshold_of(segmentation, region: str = "wt") -> float:
    value = segmentation.GetAttribute(threshold_attribute(region))
    return float(value) if value not in (None, "") else DEFAULT_THRESHOLD


def thresholds_of(segmentation) -> dict[str, float]:
    """Region → its threshold, for every region of the result."""
    return {r: threshold_of(segmentation, r) for r in regions_of(segmentation)}


def min_component_of(segmentation) -> float:
    """The result's component rule (the engine run's ``min_component_probability``; 0 for older results)."""
    value = segmentation.GetAttribute(MIN_COMPONENT_ATTRIBUTE)
    return float(value) if value not in (None, "") else 0.0


def segment_labels(segmentation, probabilities: dict, thresholds: dict, record=None) -> np.ndarray:
    """The label map the result's segments show: every region's probability (KJI) at its threshold, without the
    whole-tumour components the ensemble does not back (the run's component rule), except those holding a voxel
    the guidance of ``record`` (default: the result's run record) marks as tumour — as the engine derives its mask."""
    record = refinerecord.record_of(segmentation) if record is None else record
    keep = refinerecord.marked_tumour(record, reference_volume(segmentation))
    return label_map_at(probabilities, thresholds, min_component_of(segmentation), keep)


def _probabilities(segmentation) -> dict:
    """Region → probability array (KJI) of a result; raises ValueError when one is missing."""
    arrays = {}
    for region in regions_of(segmentation):
        probability, _ = results.output_volumes(segmentation, region)
        if probability is None or probability.GetImageData() is None:
            raise ValueError(f"'{segmentation.GetName()}' has no DiffSeg probability volume to threshold.")
        arrays[region] = volumeio.array_kji(probability)
    return arrays


def apply_threshold(segmentation, threshold: float, region: str = "wt") -> None:
    """Threshold ``region``'s probability at ``threshold`` (same grid: no resampling) and rebuild the segments
    from every region's mask (the others at their stored thresholds), nesting enforced by union upwards."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"The threshold must be in (0, 1], not {threshold}.")
    if region not in regions_of(segmentation):
        raise ValueError(f"'{segmentation.GetName()}' has no region '{region}' (it has {', '.join(regions_of(segmentation))}).")
    probabilities = _probabilities(segmentation)
    thresholds = {**thresholds_of(segmentation), region: float(threshold)}
    reference = results.output_volumes(segmentation, "wt")[0]
    segments.write_label_map(segmentation, segment_labels(segmentation, probabilities, thresholds),
                             geometry.ijk_to_ras(reference), tuple(probabilities))
    segmentation.SetAttribute(threshold_attribute(region), f"{threshold:g}")


@dataclass(frozen=True)
class RankedSlice:
    """A slice along the engine's slice axis with its mean uncertainty inside probability > 0."""

    index: int
    mean_uncertainty: float
    voxels: int


def rank_slices(segmentation, limit: int | None = None, region: str = "wt") -> list[RankedSlice]:
    """Slices with any probability > 0 of ``region``, most uncertain first.

    The score of a slice is the mean uncertainty over its voxels with probability > 0, so a slice
    where the members disagree on a few voxels of a small lesion ranks above one where they agree
    on a large lesion.
    """
    probability, uncertainty = results.output_volumes(segmentation, region)
    if probability is None or uncertainty is None:
        return []
    axis = 2 - slice_axis_of(segmentation)  # IJK axis → numpy KJI axis
    prob = np.moveaxis(volumeio.array_kji(probability), axis, 0)
    unc = np.moveaxis(volumeio.array_kji(uncertainty), axis, 0)
    inside = prob > 0
    counts = inside.reshape(inside.shape[0], -1).sum(axis=1)
    sums = np.where(inside, unc, 0).reshape(unc.shape[0], -1).sum(axis=1, dtype=np.float64)
    ranked = [RankedSlice(int(i), float(sums[i] / counts[i]), int(counts[i])) for i in np.nonzero(counts)[0]]
    ranked.sort(key=lambda s: (-s.mean_uncertainty, s.index))
    return ranked[:limit] if limit else ranked


def jump_to_slice(segmentation, index: int) -> tuple[float, float, float]:
    """Centre every slice view on slice ``index`` of the reference; returns the world position."""
    reference = reference_volume(segmentation)
    position = geometry.slice_center_world(reference, slice_axis_of(segmentation), index)
    slicer.vtkMRMLSliceNode.JumpAllSlices(segmentation.GetScene(), *position,
                                          slicer.vtkMRMLSliceNode.CenteredJumpSlice)
    return position


def merge_outputs(segmentation, new: results.EngineOutputs, slices: tuple[int, int],
                  axis: int) -> results.EngineOutputs:
    """Existing outputs with slices ``[a, b)`` along ``axis`` replaced by a re-run's, for every region.

    The label map is rebuilt from the merged probabilities at the segmentation's thresholds (:func:`segment_labels`).
    Returns detached nodes ready for :func:`results.store_outputs`.
    """
    if new.regions != regions_of(segmentation):
        raise ValueError(f"The re-run gave the regions {', '.join(new.regions)}; '{segmentation.GetName()}' has "
                         f"{', '.join(regions_of(segmentation))}.")
    np_axis = 2 - axis
    slab = [slice(None)] * 3
    slab[np_axis] = slice(int(slices[0]), int(slices[1]))
    slab = tuple(slab)
    merged = {"probability": {}, "uncertainty": {}}
    for region in new.regions:
        old_nodes = dict(zip(("probability", "uncertainty"), results.output_volumes(segmentation, region)))
        for role, old_node in old_nodes.items():
            if old_node is None:
                raise ValueError(f"'{segmentation.GetName()}' has no DiffSeg outputs to merge into.")
            values = np.array(volumeio.array_kji(old_node), dtype=np.float32, copy=True)
            incoming = volumeio.array_kji(getattr(new, role)[region])
            if incoming.shape != values.shape:
                raise ValueError(f"The re-run's {role} has shape {incoming.shape}, the existing one {values.shape}.")
            values[slab] = incoming[slab]
            merged[role][region] = volumeio.detached_volume(volumeio.image_from_array(values),
                                                            geometry.ijk_to_ras(old_node), role)
    labels = segment_labels(segmentation, {r: volumeio.array_kji(n) for r, n in merged["probability"].items()},
                            thresholds_of(segmentation))
    label_node = volumeio.detached_volume(volumeio.image_from_array(labels),
                                          geometry.ijk_to_ras(merged["probability"]["wt"]), "segmentation")
    return results.EngineOutputs(label_node, merged["probability"], merged["uncertainty"], new.summary)


def slices_around(segmentation, world_position, half_width: int = 2) -> tuple[int, int]:
    """Half-open slice range of ``2 * half_width + 1`` slices centred where ``world_position`` lies."""
    reference = reference_volume(segmentation)
    axis = slice_axis_of(segmentation)
    to_local = vtk.vtkGeneralTransform()
    slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(None, reference.GetParentTransformNode(), to_local)
    local = to_local.TransformPoint(list(world_position)[:3])
    index = int(round((np.linalg.inv(geometry.ijk_to_ras(reference)) @ np.array([*local, 1.0]))[axis]))
    n = geometry.dimensions(reference)[axis]
    index = min(max(index, 0), n - 1)
    return max(0, index - half_width), min(n, index + half_width + 1)


def red_view_center(scene) -> list[float]:
    """World position of the red slice view's centre (origin when there is no red view)."""
    red = scene.GetNodeByID("vtkMRMLSliceNodeRed")
    if red is None:
        return [0.0, 0.0, 0.0]
    matrix = red.GetSliceToRAS()
    return [matrix.GetElement(r, 3) for r in range(3)]
