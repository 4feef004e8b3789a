"""Simulated clinician clicks for training the hint planes of a guided model (``NetworkConfig.guidance``).

A click is what ``diffseg refine`` makes of ``--include`` / ``--exclude``: a ball of ``CLICK_RADIUS_MM``
in physical space (:data:`~DiffSegExtension.refinement.guidance.DEFAULT_RADIUS_MM`), so a click placed on a
neighbouring slice shows on this one as a smaller disk. Simulated as interactive-segmentation training
usually does (DeepGrow / DeepEdit): include clicks on random voxels of a region the label annotates,
exclude clicks on random background voxels near the whole tumour (or, for an inner region, in the outer
region but outside it: "edema, not core"), placed so that the whole ball lies on its side of the region's
border in 3D where the region is wide enough (a clinician clicks into a structure, not onto its edge).
Regions nest (WT ⊇ TC ⊇ ET) exactly as in :meth:`~DiffSegExtension.refinement.guidance.Guidance.known`:
include in r means inside r and every outer region, exclude of WT means background everywhere, exclude
of an inner region r means outside r and every region inside it. Later clicks win where they overlap.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from DiffSegExtension.refinement.guidance import DEFAULT_RADIUS_MM

CLICK_RADIUS_MM = DEFAULT_RADIUS_MM
#: At most this many clicks per training item (uniform 1 … MAX_CLICKS).
MAX_CLICKS = 3
#: Share of clicks that say "inside"; the rest say "not inside".
INCLUDE_SHARE = 0.5
#: Exclude clicks for the whole tumour fall within this distance (mm, in-plane) of it when it is on the slice.
EXCLUDE_RING_MM = 20.0
#: Uniform draws one item consumes (fixed, whatever the data, so batches stay reproducible).
DRAWS = 1 + 4 * MAX_CLICKS


def simulate_known(labels: torch.Tensor, brains: torch.Tensor, s: int, slice_mm: Sequence[float],
                   pixel_mm: tuple[float, float], annotated: Sequence[int], u: Sequence[float]) -> torch.Tensor:
    """Simulated guidance on slice ``s`` of a case: (R, H, W) int8, +1 inside, −1 not inside, 0 open.

    labels (S, R, H, W) uint8 region masks and brains (S, H, W) bool of the case's slices; slice_mm[k]
    the position (mm) of slice k along the slice axis; pixel_mm the in-plane pixel size (rows, columns);
    annotated: indices of the regions the label really annotates (clicks only for those); u: ``DRAWS``
    uniforms in [0, 1). A click whose region has no voxel on the drawn slice is skipped.
    """
    regions, height, width = labels.shape[1:]
    known = torch.zeros((regions, height, width), dtype=torch.int8)
    if not annotated:
        return known
    rows = (torch.arange(height, dtype=torch.float32)[:, None] * pixel_mm[0])
    cols = (torch.arange(width, dtype=torch.float32)[None, :] * pixel_mm[1])
    positions = torch.as_tensor(slice_mm, dtype=torch.float64)
    for k in range(1 + min(int(u[0] * MAX_CLICKS), MAX_CLICKS - 1)):
        kind, which, depth, pick = u[1 + 4 * k:5 + 4 * k]
        r = annotated[min(int(which * len(annotated)), len(annotated) - 1)]
        near = _within_ball(positions, s)
        z = near[min(int(depth * len(near)), len(near) - 1)]
        include = kind < INCLUDE_SHARE
        candidates = _candidates(labels[z], brains[z], r, include, pixel_mm)
        pixels = torch.nonzero(_room(labels, brains, positions, z, r, include, pixel_mm, candidates))
        if len(pixels) == 0:
            continue
        row, col = pixels[min(int(pick * len(pixels)), len(pixels) - 1)].tolist()
        reach_sq = CLICK_RADIUS_MM ** 2 - float(positions[z] - positions[s]) ** 2
        disk = (rows - row * pixel_mm[0]) ** 2 + (cols - col * pixel_mm[1]) ** 2 <= reach_sq
        if z == s:
            disk[row, col] = True
        if include:
            known[:r + 1, disk] = 1
        else:
            known[r:, disk] = -1
    return known


def _candidates(label: torch.Tensor, brain: torch.Tensor, r: int, include: bool,
                pixel_mm: tuple[float, float]) -> torch.Tensor:
    """(H, W) bool: where a click of this kind for region r may fall on a slice (label (R, H, W))."""
    inside = label[r] > 0
    if include:
        return inside
    if r > 0:
        return (label[r - 1] > 0) & ~inside
    background = brain & ~inside
    if not inside.any():
        return background
    return background & _dilate(inside, EXCLUDE_RING_MM, pixel_mm)


def _room(labels: torch.Tensor, brains: torch.Tensor, positions: torch.Tensor, z: int, r: int, include: bool,
          pixel_mm: tuple[float, float], candidates: torch.Tensor) -> torch.Tensor:
    """Where on slice z a click's whole ball stays among the candidates in 3D; else where its disk on slice z
    does (a structure thinner than the ball); else ``candidates`` (one narrower than the disk)."""
    def disk_fits(other: int, allowed: torch.Tensor) -> torch.Tensor:
        """Where the ball's disk on slice ``other`` lies inside ``allowed`` (that slice's candidates)."""
        reach = math.sqrt(CLICK_RADIUS_MM ** 2 - float(positions[other] - positions[z]) ** 2)
        return ~_dilate(~allowed, reach, pixel_mm)

    in_plane = candidates & disk_fits(z, candidates)
    if not in_plane.any():
        return candidates
    whole = in_plane.clone()
    for other in _within_ball(positions, z):
        if other != z:
            whole &= disk_fits(other, _candidates(labels[other], brains[other], r, include, pixel_mm))
    return whole if whole.any() else in_plane


def _within_ball(positions: torch.Tensor, k: int) -> list[int]:
    """The slices a click's ball on slice k reaches (k included), in slice order."""
    return torch.nonzero((positions - positions[k]).abs() <= CLICK_RADIUS_MM).flatten().tolist()


def _dilate(mask: torch.Tensor, mm: float, pixel_mm: tuple[float, float]) -> torch.Tensor:
    """(H, W) bool grown by ``mm`` in each in-plane direction (a box, which holds the disk of that radius)."""
    kernel = [2 * math.floor(mm / p) + 1 for p in pixel_mm]
    return F.max_pool2d(mask[None, None].float(), kernel, stride=1, padding=[k // 2 for k in kernel])[0, 0] > 0
