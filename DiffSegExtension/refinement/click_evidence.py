"""A click's reach beyond the re-sampled slices: the click as evidence that re-weights the ensemble's members.

The network is 2D, so re-sampling with a click as a condition changes only the slices its ball touches,
while the error a clinician clicks on usually spans tens of slices. A click says more than its ball: near
an include click, the members that call a voxel tumour are right more often than the ensemble's vote
says. Each point therefore multiplies the odds p / (1 − p) of every voxel within ``reach_mm`` of it by a
likelihood ratio — an importance weight on the members that agree with the click — that is largest at
the point and falls linearly with physical distance to 1 at ``reach_mm``, in the point's region only
(the whole tumour for a plain click; inner regions follow only as nesting needs). At the point it lifts a voxel
that 1 of N members calls region to ``TARGET`` (include), or lowers one that 1 of N members calls
background to 1 − ``TARGET`` (exclude). Voxels on which every member agrees (probability 0 or 1) keep
their value: a click cannot create tumour that no member proposed, only the diffusion can, on the
re-sampled slices. Uncertainty (member variance p (1 − p)) and entropy follow the re-weighted
probability. The reach and the target were chosen on ``brats-flair``'s robot-user runs (README, "A
click reaches beyond its slices").

Given the case's images, a click speaks only for tissue that looks like the clicked tissue: the weight is
also multiplied by a likeness exp(−d² / 2σ²), d² the mean over the sequences of the squared difference
between a voxel's intensity and the mean over the click's ball, in units of the brain's standard deviation
(:class:`TissueLikeness`). Without it an include click on a missed part lifted every uncertain voxel
around it, also the false ones next to it (README, "Clicks follow the tissue").
"""

from __future__ import annotations

import numpy as np
import torch

from DiffSegExtension.data.normalise import foreground_mask
from DiffSegExtension.ensemble import binary_entropy
from DiffSegExtension.refinement.guidance import Point, ball_in_box, distances_around

#: Default distance (mm) at which a click's evidence has fallen to nothing.
DEFAULT_REACH_MM = 40.0
#: Probability that a voxel 1 of N members calls region has right at an include click.
TARGET = 0.75
#: σ of :class:`TissueLikeness`, in brain standard deviations: chosen on the training subjects' robot-user runs
#: of ``brats-regions`` with the evidence alone (0.5, 1 and none compared; README, "Clicks follow the tissue").
LIKENESS_SIGMA = 0.5


class TissueLikeness:
    """How much each voxel looks like a click's tissue, from the case's images (sequence → (*shape) float
    arrays on the input grid, as stored: raw, z-scored or scaled alike)."""

    def __init__(self, images: dict[str, np.ndarray], sigma: float = LIKENESS_SIGMA):
        self.images = list(images.values())
        self.sigma = sigma
        # The brain's spread per sequence from every 4th voxel along each axis: ~10 ms, within 1 % of the whole's.
        self.scales = []
        for image in self.images:
            sample = np.asarray(image[::4, ::4, ::4], dtype=np.float32)
            brain = sample[foreground_mask(sample)]
            spread = float(brain.std()) if brain.size > 1 else 0.0
            self.scales.append(spread if spread > 0 else 1.0)  # no spread to measure by: unit scale

    def around(self, point: Point, affine: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
        """(box's shape) float32 in (0, 1]: exp(−d² / 2σ²) per voxel of ``box`` (see the module docstring)."""
        ball_box, ball = ball_in_box(point, affine, self.images[0].shape)
        d2 = np.zeros(tuple(b.stop - b.start for b in box), dtype=np.float32)
        for image, scale in zip(self.images, self.scales):
            clicked = float(image[ball_box][ball].mean())
            d2 += ((image[box].astype(np.float32) - clicked) / scale) ** 2
        return np.exp(-d2 / (len(self.images) * 2 * self.sigma ** 2))


def click_strength(members: int) -> float:
    """Log likelihood ratio of a click at its own position, for an ensemble of ``members``."""
    lowest = 1.0 / max(members, 2)
    return float(np.log(TARGET / (1 - TARGET)) - np.log(lowest / (1 - lowest)))


def falloff(point: Point, affine: np.ndarray, shape: tuple[int, ...]) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """(box, weight): the voxel box around ``point`` within its ``reach_mm`` and the weight in it, float32
    1 at the point falling linearly with physical distance to 0 at ``reach_mm``; ``None`` without reach."""
    if point.reach_mm <= 0:
        return None
    box, _, distance = distances_around(point.ras, affine, shape, point.reach_mm)
    return box, np.clip(1.0 - distance / point.reach_mm, 0.0, None).astype(np.float32)


def apply_click_evidence(maps: dict[str, np.ndarray], points: list[Point], affine: np.ndarray,
                         regions: tuple[str, ...], members: int, within: np.ndarray | None = None,
                         likeness: TissueLikeness | None = None) -> None:
    """Re-weight ``maps`` (probability / uncertainty / entropy, each (R, *shape) float32) in place by the
    evidence of ``points``, in order, only inside ``within`` ((*shape) bool; everywhere when ``None``),
    weighted by ``likeness`` where given (by distance alone without).

    A point's evidence is about its own region's border (an exclude point's region is the whole tumour
    unless it names another): only that region is re-weighted, and the others follow only as far as
    nesting needs (after an include the outer regions are at least the region, after an exclude the
    inner ones at most).
    """
    probability = maps["probability"]
    strength = click_strength(members)
    for point in points:
        reach = falloff(point, affine, probability.shape[1:])
        if reach is None:
            continue
        box, weight = reach
        if within is not None:
            weight = weight * within[box]
        if likeness is not None:
            weight = weight * likeness.around(point, affine, box)
        r = regions.index(point.region)
        local = probability[(slice(None), *box)]  # a view: (R, *box)
        open_ = (weight > 0) & (local[r] > 0) & (local[r] < 1)
        if not open_.any():
            continue
        before = local.copy()
        p = local[r][open_].astype(np.float64)
        sign = 1.0 if point.kind == "include" else -1.0
        local[r][open_] = 1.0 / (1.0 + np.exp(-(np.log(p / (1 - p)) + sign * strength * weight[open_])))
        if point.kind == "include":
            for outer in range(r - 1, -1, -1):
                np.maximum(local[outer], local[outer + 1], out=local[outer])
        else:
            for inner in range(r + 1, len(regions)):
                np.minimum(local[inner], local[inner - 1], out=local[inner])
        changed = local != before
        q = local[changed].astype(np.float64)
        maps["uncertainty"][(slice(None), *box)][changed] = q * (1 - q)
        maps["entropy"][(slice(None), *box)][changed] = binary_entropy(torch.from_numpy(q)).numpy()
