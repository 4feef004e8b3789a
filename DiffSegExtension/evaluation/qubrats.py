"""The QU-BraTS 2020 uncertainty score (Mehta et al. 2022), as the organisers' script computes it.

Per region: an uncertainty map in [0, 100]; at each threshold τ of ``THRESHOLDS`` (100, 97.5, …, 0)
the voxels with uncertainty > τ are filtered out. Curves over τ:
- Dice between the prediction and the truth on the remaining voxels (1.0 when both are empty);
- filtered true-positive ratio: the share of the prediction's true positives inside the brain that
  were filtered out; the same for true negatives.
AUCs are taken over τ (trapezoids) and divided by 100; score = (Dice AUC + (1 − FTP AUC) + (1 − FTN AUC)) / 3.
The ratios use the script's float32 ε in the denominator. Its τ grid is built with
``np.arange(0, 100 + ε, 2.5)``, which drops τ = 100 under NumPy 2; the intended 41-point grid is used here.
"""

from __future__ import annotations

import numpy as np

THRESHOLDS = np.linspace(100.0, 0.0, 41)
_EPS = float(np.finfo(np.float32).eps)


def _kept_counts(uncertainty: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """For each τ, how many of these voxels have uncertainty ≤ τ (are kept)."""
    return np.searchsorted(np.sort(uncertainty.ravel()), thresholds, side="right")


def qubrats_curves(truth: np.ndarray, prediction: np.ndarray, uncertainty: np.ndarray, brain: np.ndarray,
                   thresholds: np.ndarray = THRESHOLDS) -> dict[str, np.ndarray]:
    """Dice, FTP ratio and FTN ratio (each (K,)) at each threshold; arrays of one shape, uncertainty in [0, 100]."""
    t, p, b = (np.asarray(a).astype(bool) for a in (truth, prediction, brain))
    u = np.asarray(uncertainty, dtype=np.float64)
    both, pred_kept, truth_kept = (_kept_counts(u[m], thresholds) for m in (t & p, p, t))
    denominator = pred_kept + truth_kept
    dice = np.where(denominator == 0, 1.0, 2.0 * both / np.maximum(denominator, 1))
    tp, tn = t & p & b, ~t & ~p & b

    def filtered_ratio(mask: np.ndarray) -> np.ndarray:
        total = int(mask.sum())
        return (total - _kept_counts(u[mask], thresholds)) / (total + _EPS)

    return {"dice": dice.astype(np.float64), "ftp": filtered_ratio(tp), "ftn": filtered_ratio(tn)}


def _auc(values: np.ndarray, thresholds: np.ndarray) -> float:
    x, y = np.asarray(thresholds, dtype=np.float64), np.asarray(values, dtype=np.float64)
    return float(abs(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0)) / 100.0)


def qubrats_scores(truth: np.ndarray, prediction: np.ndarray, uncertainty: np.ndarray, brain: np.ndarray,
                   thresholds: np.ndarray = THRESHOLDS) -> dict[str, float]:
    """``qu_dice_auc``, ``qu_ftp_auc``, ``qu_ftn_auc`` and ``qu_score`` of one region of one case."""
    curves = qubrats_curves(truth, prediction, uncertainty, brain, thresholds)
    dice_auc, ftp_auc, ftn_auc = (_auc(curves[k], thresholds) for k in ("dice", "ftp", "ftn"))
    return {"qu_dice_auc": dice_auc, "qu_ftp_auc": ftp_auc, "qu_ftn_auc": ftn_auc,
            "qu_score": (dice_auc + (1.0 - ftp_auc) + (1.0 - ftn_auc)) / 3.0}
