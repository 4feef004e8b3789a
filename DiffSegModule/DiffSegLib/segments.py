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
