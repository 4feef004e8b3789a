"""A label map → the segments of a DiffSeg segmentation node (named, coloured, terminology-tagged).

Whole-tumour results have one "Tumor" segment (label 1); region results have Edema (2), Necrotic /
non-enhancing core (1) and Enhancing tumor (4) (see :mod:`.regions`). Every segment is written on the
label map's own grid (no resampling): segment voxels = label-map voxels with that value, exactly.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

import slicer

from . import geometry, volumeio
from .regions import ALL_SEGMENT_IDS, segment_specs


def write_label_map(segmentation, labels: np.ndarray, ijk_to_ras: np.ndarray, regions: Sequence[str]) -> None:
    """Replace the segments of ``segmentation`` by ``labels`` (KJI uint8 on the grid ``ijk_to_ras``).

    Segments are created with name, colour and terminology when absent; DiffSeg segments of another kind
    of result (a whole-tumour result re-run with a region model, or back) are removed.

    :raises RuntimeError: when Slicer refuses a segment's labelmap.
    """
    content = segmentation.GetSegmentation()
    specs = segment_specs(regions)
    wanted = {spec.segment_id for spec in specs}
    for segment_id in ALL_SEGMENT_IDS:
        if segment_id not in wanted and content.GetSegment(segment_id) is not None:
            content.RemoveSegment(segment_id)
    matrix = geometry.vtk_matrix(ijk_to_ras)
    for spec in specs:
        if content.GetSegment(spec.segment_id) is None:
            content.AddEmptySegment(spec.segment_id, spec.name, spec.color)
            content.GetSegment(spec.segment_id).SetTag(slicer.vtkSegment.GetTerminologyEntryTagName(),
                                                       spec.terminology)
        labelmap = slicer.vtkOrientedImageData()
        labelmap.ShallowCopy(volumeio.image_from_array((labels == spec.label).astype(np.uint8)))
        labelmap.SetImageToWorldMatrix(matrix)
        ok = slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
            labelmap, segmentation, spec.segment_id, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
        if not ok:
            raise RuntimeError(f"Could not write the {spec.name.lower()} mask into '{segmentation.GetName()}'.")



def segment_on_grid(segmentation, segment_id: str, ijk_to_ras: np.ndarray, dimensions: Sequence[int]) -> np.ndarray:
    """Bool KJI array: segment ``segment_id`` as it is now, resampled (nearest neighbour) onto the grid
    ``ijk_to_ras`` with IJK ``dimensions``, in the segmentation's local coordinates."""
    grid = slicer.vtkOrientedImageData()
    grid.SetExtent(0, dimensions[0] - 1, 0, dimensions[1] - 1, 0, dimensions[2] - 1)
    grid.SetImageToWorldMatrix(geometry.vtk_matrix(ijk_to_ras))
    source, resampled = slicer.vtkOrientedImageData(), slicer.vtkOrientedImageData()
    segmentation.GetBinaryLabelmapRepresentation(segment_id, source)
    slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(source, grid, resampled, False, True)
    return volumeio.array_kji_image(resampled) > 0


def read_label_map(segmentation, ijk_to_ras: np.ndarray, dimensions: Sequence[int], regions: Sequence[str]) -> np.ndarray:
    """The segments of ``segmentation`` as they are now (after any Segment Editor edits) → KJI uint8 label map
    on the grid ``ijk_to_ras`` with IJK ``dimensions``: the inverse of :func:`write_label_map`.

    The segmentation shares the reference's parent transform, so its local coordinates are the grid's. Where
    segments overlap, the later one of :func:`.regions.segment_specs` wins (inner regions come after outer ones).
    """
    labels = np.zeros(tuple(reversed(tuple(dimensions))), dtype=np.uint8)
    content = segmentation.GetSegmentation()
    for spec in segment_specs(regions):
        if content.GetSegment(spec.segment_id) is not None:
            labels[segment_on_grid(segmentation, spec.segment_id, ijk_to_ras, dimensions)] = spec.label
    return labels
