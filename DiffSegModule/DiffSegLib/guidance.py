"""The clinician's guidance for ``diffseg refine``, taken from the scene and put in the engine's frame.

Points are RAS millimetres. Markups control points are read in world coordinates (after parent
transforms) and mapped into the reference volume's local RAS, the frame of the NIfTI files the engine
reads (see :meth:`.logic.DiffSegLogic._write_inputs`), so a point lands on the voxel the user sees it on.

Strokes become one uint8 label volume on the reference grid, KJI order (0 unpainted, 1 tumour, 2 not
tumour), from one of:

* a label map (or scalar) volume node with values 0, 1, 2: resampled nearest-neighbour onto the reference
  grid, parent transforms honoured (a copy when it is already on that grid);
* the result's own segmentation node: the Segment Editor edits of the result. Voxels the reviewed region's
  segments gained since the result (probabilities at the result's thresholds) are 1, voxels they lost are 2;
* another segmentation node: its first segment is 1, its second 2.

MRML + numpy only (no Qt).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import vtk

import slicer

from . import geometry, results, review, segments, volumeio
from .inputs import DiffSegInputError
from .regions import region_mask, regions_of

Point = tuple[float, float, float]
STROKE_INSIDE, STROKE_OUTSIDE = 1, 2


@dataclass
class RefineGuidance:
    """What one refinement of ``segmentation`` adds: ``include`` / ``exclude`` points (world RAS mm), ``strokes``
    (a volume or segmentation node, see the module docstring, or None), the ``region`` (wt, tc or et) that
    include points and strokes mean, and ``reach_mm``: how far a point's evidence reaches (None: the engine's
    default, 0: the ball only)."""

    segmentation: object
    include: list[Point] = field(default_factory=list)
    exclude: list[Point] = field(default_factory=list)
    strokes: object = None
    region: str = "wt"
    reach_mm: float | None = None

    def problem(self) -> str | None:
        """Why this guidance cannot be used (None: it can)."""
        if not self.include and not self.exclude and self.strokes is None:
            return "Refine needs guidance: place an include or exclude point, or paint on the result."
        if self.reach_mm is not None and not self.reach_mm >= 0:
            return f"The reach of a point must be 0 mm or more (0: the clicked ball only), not {self.reach_mm}."
        if self.region not in regions_of(self.segmentation):
            return (f"'{self.segmentation.GetName()}' has no region '{self.region}' "
                    f"(it has {', '.join(regions_of(self.segmentation))}).")
        return None


def markups_points(node) -> list[Point]:
    """World RAS (mm) of every control point of a markups node (none for None)."""
    if node is None:
        return []
    found = []
    for i in range(node.GetNumberOfControlPoints()):
        position = [0.0, 0.0, 0.0]
        node.GetNthControlPointPositionWorld(i, position)
        found.append(tuple(float(v) for v in position))
    return found


def to_reference_frame(points: Sequence[Point], reference) -> list[Point]:
    """World RAS points → the reference's local RAS (inverse of its parent transforms, also non-linear ones)."""
    to_local = vtk.vtkGeneralTransform()
    slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(None, reference.GetParentTransformNode(), to_local)
    return [tuple(float(v) for v in to_local.TransformPoint(list(p))) for p in points]


def stroke_labels(guidance: RefineGuidance) -> np.ndarray | None:
    """The strokes as a KJI uint8 volume on the reference grid (see the module docstring); None when no voxel
    is painted.

    :raises DiffSegInputError: a stroke volume holds values other than 0, 1, 2, or the node is of another kind.
    """
    strokes, segmentation = guidance.strokes, guidance.segmentation
    if strokes is None:
        return None
    reference = review.reference_volume(segmentation)
    if strokes.IsA("vtkMRMLSegmentationNode"):
        labels = (_edits(segmentation, guidance.region) if strokes.GetID() == segmentation.GetID()
                  else _two_segments(strokes, reference))
    elif strokes.IsA("vtkMRMLScalarVolumeNode"):
        labels = volumeio.array_kji_image(geometry.resample_to_reference(strokes, reference, "nearest"))
        values = set(np.unique(labels).tolist())
        if not values <= {0, STROKE_INSIDE, STROKE_OUTSIDE}:
            raise DiffSegInputError(f"The strokes volume '{strokes.GetName()}' holds {sorted(values)}: paint "
                                    "1 = tumour, 2 = not tumour, 0 = unpainted.")
        labels = labels.astype(np.uint8)
    else:
        raise DiffSegInputError(f"'{strokes.GetName()}' cannot give strokes: use a label map volume (1 = tumour, "
                                "2 = not tumour) or a segmentation.")
    return labels if labels.any() else None


def _edits(segmentation, region: str) -> np.ndarray:
    """1 where ``region``'s segments gained voxels since the result, 2 where they lost some."""
    reference = review.reference_volume(segmentation)
    regions = regions_of(segmentation)
    probabilities = {r: volumeio.array_kji(results.output_volumes(segmentation, r)[0]) for r in regions}
    before = region_mask(review.segment_labels(segmentation, probabilities, review.thresholds_of(segmentation)), region)
    now = region_mask(segments.read_label_map(segmentation, geometry.ijk_to_ras(reference),
                                              geometry.dimensions(reference), regions), region)
    labels = np.zeros(before.shape, dtype=np.uint8)
    labels[now & ~before] = STROKE_INSIDE
    labels[before & ~now] = STROKE_OUTSIDE
    return labels


def _two_segments(segmentation, reference) -> np.ndarray:
    """First segment → 1, second → 2, on the reference grid (the segmentation's parent transform is assumed to be
    the reference's, as for DiffSeg's own results)."""
    content = segmentation.GetSegmentation()
    if content.GetNumberOfSegments() < 1:
        raise DiffSegInputError(f"The strokes segmentation '{segmentation.GetName()}' has no segment: add a "
                                "'tumour' segment (and optionally a second, 'not tumour', one).")
    labels = np.zeros(tuple(reversed(geometry.dimensions(reference))), dtype=np.uint8)
    for value in (STROKE_INSIDE, STROKE_OUTSIDE)[:content.GetNumberOfSegments()]:
        mask = segments.segment_on_grid(segmentation, content.GetNthSegmentID(value - 1), geometry.ijk_to_ras(reference),
                                        geometry.dimensions(reference))
        labels[mask] = value
    return labels
