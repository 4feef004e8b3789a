"""The clinician's guidance: include / exclude points (RAS mm) and painted strokes → known voxels.

A point becomes a ball of ``radius_mm`` around it in physical space (so it reaches neighbouring slices),
and beyond the ball it is evidence out to ``reach_mm`` (:mod:`~DiffSegExtension.refinement.click_evidence`);
strokes are label volumes on the input grid (1 = inside the region, 2 = not in the region). Regions nest
(WT ⊇ TC ⊇ ET): "inside region r" also means inside every outer region, "not in r" also means not in
any inner region, and an exclude point is background in every region.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from DiffSegExtension.errors import DiffSegInputError

POINT_KINDS = ("include", "exclude")
#: Radius (mm) of the ball a point stands for.
DEFAULT_RADIUS_MM = 3.0
#: Stroke label values.
STROKE_INSIDE, STROKE_OUTSIDE = 1, 2


@dataclass(frozen=True)
class Point:
    """One click: ``kind`` include / exclude at ``ras`` (mm); an include point means inside ``region``. The
    ball of ``radius_mm`` is known; ``reach_mm`` (0: none) is how far its evidence reaches."""

    kind: str
    ras: tuple[float, float, float]
    region: str = "wt"
    radius_mm: float = DEFAULT_RADIUS_MM
    reach_mm: float = 0.0

    def to_json(self) -> dict:
        return {"kind": self.kind, "ras_mm": list(self.ras), "region": self.region, "radius_mm": self.radius_mm,
                "reach_mm": self.reach_mm}

    @classmethod
    def from_json(cls, data: dict) -> "Point":
        """A recorded point; one recorded before points had a reach has none (it was applied without)."""
        return cls(str(data["kind"]), tuple(float(v) for v in data["ras_mm"]), str(data.get("region", "wt")),
                   float(data.get("radius_mm", DEFAULT_RADIUS_MM)), float(data.get("reach_mm", 0.0)))


def parse_point(text: str, kind: str) -> tuple[float, float, float]:
    """``"X,Y,Z"`` (RAS mm) → a float triple; anything else raises with the fix."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(np.isfinite(values)):
        raise DiffSegInputError(f"--{kind} '{text}' is not a point: give X,Y,Z in RAS millimetres, e.g. "
                                f"--{kind} 12.5,-30,41")
    return values


@dataclass
class Guidance:
    """All guidance of one result: ``points`` in the order given, ``strokes`` region → uint8 label volume
    (input grid; 0 unpainted, 1 inside, 2 not inside)."""

    points: list[Point] = field(default_factory=list)
    strokes: dict[str, np.ndarray] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return not self.points and not any(s.any() for s in self.strokes.values())

    def merged(self, newer: "Guidance") -> "Guidance":
        """This guidance followed by ``newer``: points appended, newer paint over older paint."""
        strokes = {r: s.copy() for r, s in self.strokes.items()}
        for region, paint in newer.strokes.items():
            base = strokes.get(region, np.zeros_like(paint))
            strokes[region] = np.where(paint > 0, paint, base).astype(np.uint8)
        return Guidance(self.points + newer.points, strokes)

    def known(self, affine: np.ndarray, shape: tuple[int, int, int], regions: tuple[str, ...]) -> np.ndarray:
        """(R, *shape) int8 on the input grid: +1 known inside the region, −1 known outside, 0 open.

        Points apply in order, then strokes region by region (WT first); later guidance wins where they
        disagree, and each keeps the regions nested.
        """
        known = np.zeros((len(regions), *shape), dtype=np.int8)
        for point in self.points:
            box, ball = ball_in_box(point, affine, shape)
            around = known[(slice(None), *box)]  # a view: the ball's box
            if point.kind == "include":
                around[:_index(point.region, regions) + 1, ball] = 1
            else:
                around[:, ball] = -1
        for region in (r for r in regions if r in self.strokes):
            r = regions.index(region)
            known[:r + 1, self.strokes[region] == STROKE_INSIDE] = 1
            known[r:, self.strokes[region] == STROKE_OUTSIDE] = -1
        return known

    def to_json(self) -> dict:
        return {"points": [p.to_json() for p in self.points],
                "strokes": {r: int((s > 0).sum()) for r, s in self.strokes.items()}}


def _index(region: str, regions: tuple[str, ...]) -> int:
    if region not in regions:
        raise DiffSegInputError(f"region '{region}' is not one of the model's regions {list(regions)}: "
                                f"use --region {' or '.join(regions)}")
    return regions.index(region)


def voxel_of(ras: tuple[float, float, float], affine: np.ndarray) -> np.ndarray:
    """Continuous voxel (i, j, k) of a RAS mm point through the input's affine."""
    return (np.linalg.inv(np.asarray(affine, dtype=np.float64)) @ np.append(np.asarray(ras, dtype=np.float64), 1.0))[:3]


def distances_around(ras: tuple[float, float, float], affine: np.ndarray, shape: tuple[int, int, int],
                     radius_mm: float) -> tuple[tuple[slice, slice, slice], tuple[int, int, int], np.ndarray]:
    """(box, nearest, distance): the voxel box (inside the volume) holding every voxel centre within
    ``radius_mm`` of the RAS point, the voxel nearest to the point (clipped into the volume), and the
    physical distance (mm, float64, the box's shape) of each box voxel's centre to the point."""
    centre = voxel_of(ras, affine)
    linear = np.asarray(affine, dtype=np.float64)[:3, :3]
    # A world step of r mm moves voxel index i by at most r · ‖row i of A⁻¹‖.
    reach = np.ceil(radius_mm * np.linalg.norm(np.linalg.inv(linear), axis=1)).astype(int) + 1
    nearest = np.clip(np.rint(centre).astype(int), 0, np.asarray(shape) - 1)
    lo, hi = np.maximum(nearest - reach, 0), np.minimum(nearest + reach + 1, shape)
    grid = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"))
    distance = np.linalg.norm(np.tensordot(linear, grid - centre[:, None, None, None], axes=1), axis=0)
    return tuple(slice(a, b) for a, b in zip(lo, hi)), tuple(int(v) for v in nearest), distance


def point_ball(point: Point, affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Bool (*shape): voxels whose centre lies within ``point.radius_mm`` of the point (at least the voxel
    holding it). A point outside the volume raises."""
    box, inside = ball_in_box(point, affine, shape)
    ball = np.zeros(shape, dtype=bool)
    ball[box] = inside
    return ball


def ball_in_box(point: Point, affine: np.ndarray, shape: tuple[int, int, int]) -> tuple[tuple[slice, ...], np.ndarray]:
    """:func:`point_ball` as (box, the ball's voxels in the box): the box a few voxels across, not a volume."""
    centre = voxel_of(point.ras, affine)
    if np.any(centre < -0.5) or np.any(centre > np.asarray(shape) - 0.5):
        where = ", ".join(f"{v:.1f}" for v in point.ras)
        raise DiffSegInputError(f"--{point.kind} {where} (RAS mm) lies outside the input volume (voxel "
                                f"{', '.join(f'{v:.1f}' for v in centre)} of a {'×'.join(map(str, shape))} grid): "
                                "place the point inside the image")
    box, nearest, distance = distances_around(point.ras, affine, shape, point.radius_mm)
    inside = distance <= point.radius_mm
    inside[tuple(n - b.start for n, b in zip(nearest, box))] = True
    return box, inside
