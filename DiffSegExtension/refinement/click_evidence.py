"""A click's reach beyond the re-sampled slices: the click as evidence that re-weights the ensemble's members.

The network is 2D, so re-sampling with a click as a condition changes only the slices its ball touches,
while the error a clinician clicks on usually spans tens of slices. A click says more than its ball: near
an include click, the members that call a voxel tumour are right more often than the ensemble's vote
says. Each point therefore multiplies the odds p / (1 − p) of every voxel within ``reach_mm`` of it by a
likelihood ratio — an importance weight on the members that agree with the click — that is largest at
the point and falls linearly with physical distance to 1 at ``reach_mm``. At the point it lifts a voxel
that 1 of N members calls region to ``TARGET`` (include), or lowers one that 1 of N members calls
background to 1 − ``TARGET`` (exclude). Voxels on which every member agrees (probability 0 or 1) keep
their value: a click cannot create tumour that no member proposed, only the diffusion can, on the
re-sampled slices. Uncertainty (member variance p (1 − p)) and entropy follow the re-weighted
probability. The reach and the target were chosen on ``brats-flair``'s robot-user runs and measured on
the region model's validation subjects (README, issue 10).
"""

from __future__ import annotations

import numpy as np

from DiffSegExtension.refinement.guidance import Point, voxel_of

#: Default distance (mm) at which a click's evidence has fallen to nothing.
DEFAULT_REACH_MM = 40.0
#: Probability that a voxel 1 of N members calls region has right at an include click.
TARGET = 0.75


def click_strength(members: int) -> float:
    """Log likelihood ratio of a click at its own position, for an ensemble of ``members``."""
    lowest = 1.0 / max(members, 2)
    return float(np.log(TARGET / (1 - TARGET)) - np.log(lowest / (1 - lowest)))


def falloff(point: Point, affine: np.ndarray, shape: tuple[int, ...]) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """(box, weight): the voxel box around ``point`` within its ``reach_mm`` and the weight in it, float32
    1 at the point falling linearly with physical distance to 0 at ``reach_mm``; ``None`` without reach."""
    if point.reach_mm <= 0:
        return None
    centre = voxel_of(point.ras, affine)
    linear = np.asarray(affine, dtype=np.float64)[:3, :3]
    extent = np.ceil(point.reach_mm * np.linalg.norm(np.linalg.inv(linear), axis=1)).astype(int) + 1
    nearest = np.rint(centre).astype(int)
    lo, hi = np.maximum(nearest - extent, 0), np.minimum(nearest + extent + 1, shape)
    if np.any(lo >= hi):
        return None
    grid = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"))
    distance = np.linalg.norm(np.tensordot(linear, grid - centre[:, None, None, None], axes=1), axis=0)
    weight = np.clip(1.0 - distance / point.reach_mm, 0.0, None).astype(np.float32)
    return tuple(slice(a, b) for a, b in zip(lo, hi)), weight


def apply_click_evidence(maps: dict[str, np.ndarray], points: list[Point], affine: np.ndarray,
                         regions: tuple[str, ...], members: int, within: np.ndarray | None = None) -> None:
    """Re-weight ``maps`` (probability / uncertainty / entropy, each (R, *shape) float32) in place by the
    evidence of ``points``, only inside ``within`` ((*shape) bool; everywhere when ``None``).

    An include point of region r speaks for r and every outer region; an exclude point against every
    region. Probabilities stay nested (an inner region never above an outer one).
    """
    probability = maps["probability"]
    shape = probability.shape[1:]
    shift = np.zeros_like(probability)
    strength = click_strength(members)
    for point in points:
        reach = falloff(point, affine, shape)
        if reach is None:
            continue
        box, weight = reach
        if within is not None:
            weight = weight * within[box]
        if point.kind == "include":
            shift[(slice(0, regions.index(point.region) + 1), *box)] += strength * weight
        else:
            shift[(slice(None), *box)] -= strength * weight
    moved = (shift != 0) & (probability > 0) & (probability < 1)
    if not moved.any():
        return
    p = probability[moved].astype(np.float64)
    probability[moved] = 1.0 / (1.0 + np.exp(-(np.log(p / (1 - p)) + shift[moved])))
    np.minimum.accumulate(probability, axis=0, out=probability)
    touched = moved.any(axis=0)
    p = probability[:, touched].astype(np.float64)
    maps["uncertainty"][:, touched] = p * (1 - p)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -(np.where(p > 0, p * np.log2(p), 0.0) + np.where(p < 1, (1 - p) * np.log2(1 - p), 0.0))
    maps["entropy"][:, touched] = entropy
