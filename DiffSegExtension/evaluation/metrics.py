"""Segmentation and uncertainty metrics on numpy arrays of the same shape.

Conventions: masks are {0, 1} (any integer/bool dtype). Dice is 1.0 when both masks are empty
(a correct "no tumour"). Distances are in mm from the voxel spacing. Voxel-level uncertainty and
calibration metrics are computed inside a ``region`` (normally the brain), since the trivially
certain background would otherwise dominate them.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    p, t = np.asarray(prediction).astype(bool), np.asarray(truth).astype(bool)
    total = p.sum() + t.sum()
    return 1.0 if total == 0 else float(2.0 * np.logical_and(p, t).sum() / total)


def hd95(prediction: np.ndarray, truth: np.ndarray, spacing: tuple[float, ...]) -> float:
    """95th-percentile symmetric Hausdorff distance between the mask surfaces, in mm.

    0.0 when both masks are empty; ``nan`` when exactly one is (the distance is undefined).
    """
    from monai.metrics import compute_hausdorff_distance

    p, t = np.asarray(prediction).astype(bool), np.asarray(truth).astype(bool)
    if not p.any() and not t.any():
        return 0.0
    if not p.any() or not t.any():
        return float("nan")
    as_onehot = lambda m: torch.from_numpy(m)[None, None].float()  # noqa: E731  (B=1, C=1, ...)
    with warnings.catch_warnings():  # MONAI ≥ 1.5 warns about an internal argument it passes itself
        warnings.filterwarnings("ignore", category=FutureWarning, module="monai")
        value = compute_hausdorff_distance(as_onehot(p), as_onehot(t), percentile=95, spacing=[float(s) for s in spacing])
    return float(value.item())


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (ties get average ranks).

    ``nan`` if only one class is present.
    """
    scores, labels = np.asarray(scores, dtype=np.float64).ravel(), np.asarray(labels).astype(bool).ravel()
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    first_rank = np.cumsum(counts) - counts + 1
    ranks = (first_rank + (counts - 1) / 2.0)[inverse]
    return float((ranks[labels].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def reliability(probability: np.ndarray, truth: np.ndarray, bins: int = 10) -> dict[str, np.ndarray | float]:
    """Reliability diagram data and the expected calibration error (ECE).

    Returns per bin of predicted probability: ``confidence`` (mean predicted), ``frequency`` (observed
    tumour fraction), ``count``; and ``ece`` = Σ_b n_b/N |frequency_b − confidence_b|.
    """
    p = np.asarray(probability, dtype=np.float64).ravel()
    t = np.asarray(truth).astype(bool).ravel()
    index = np.minimum((p * bins).astype(int), bins - 1)
    count = np.bincount(index, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(index, weights=p, minlength=bins) / count
        frequency = np.bincount(index, weights=t.astype(np.float64), minlength=bins) / count
    used = count > 0
    ece = float(np.sum(count[used] / count.sum() * np.abs(frequency[used] - confidence[used]))) if count.sum() else math.nan
    return {"confidence": confidence, "frequency": frequency, "count": count, "ece": ece}


def uncertainty_error_overlap(uncertainty: np.ndarray, error: np.ndarray) -> dict[str, float]:
    """Uncertainty–error overlap (Jungo et al. 2020): Dice between {uncertainty > τ} and the error map.

    Returns the overlap at τ = 0 (any disagreement between members) and the best over the
    distinct uncertainty values. Every τ at once from one sort, so a continuous uncertainty (millions of
    distinct values, e.g. MC dropout's) costs no more than an ensemble's few.
    """
    u = np.asarray(uncertainty, dtype=np.float64).ravel()
    e = np.asarray(error).astype(bool).ravel()
    at_zero = dice(u > 0, e)
    values, index = np.unique(u, return_inverse=True)
    # Voxels, and error voxels, with uncertainty above values[k], for every k but the last (≥ 1 voxel each).
    above = np.cumsum(np.bincount(index, minlength=len(values))[::-1])[::-1][1:]
    errors_above = np.cumsum(np.bincount(index, weights=e, minlength=len(values))[::-1])[::-1][1:]
    overlaps = 2.0 * errors_above / (above + e.sum())
    return {"ueo": at_zero, "ueo_max": float(max(at_zero, overlaps.max(initial=0.0)))}


def spacing_from_affine(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size (mm) along each voxel axis: the column norms of the affine's 3×3 part."""
    return tuple(float(v) for v in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))
