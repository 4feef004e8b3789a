"""Metrics against hand-computed values."""

import math

import numpy as np
import pytest

from DiffSegExtension.evaluation.metrics import auroc, dice, hd95, reliability, spacing_from_affine, uncertainty_error_overlap


def test_dice_values_and_empty_convention():
    a = np.zeros((4, 4), np.uint8)
    b = np.zeros((4, 4), np.uint8)
    assert dice(a, b) == 1.0, "both empty: defined as 1"
    a[0, :2] = 1
    assert dice(a, b) == 0.0
    b[0, 1:3] = 1
    assert dice(a, b) == pytest.approx(2 * 1 / 4)


def test_hd95_is_in_millimetres_of_the_spacing():
    a = np.zeros((20, 20, 20), bool)
    b = np.zeros((20, 20, 20), bool)
    a[5:10, 5:10, 5:10] = True
    b[5:10, 5:10, 8:13] = True  # shifted by 3 voxels along axis 2
    assert hd95(a, b, (1, 1, 1)) == pytest.approx(3.0)
    assert hd95(a, b, (1, 1, 2.5)) == pytest.approx(7.5)
    assert hd95(a, a, (1, 1, 1)) == 0.0
    assert hd95(np.zeros_like(a), np.zeros_like(b), (1, 1, 1)) == 0.0
    assert math.isnan(hd95(a, np.zeros_like(b), (1, 1, 1)))


def test_auroc_with_ties_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, 300) / 4.0  # heavy ties, like a 5-member variance
    labels = rng.random(300) < 0.3 + 0.4 * scores
    pos, neg = scores[labels], scores[~labels]
    pairwise = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    assert auroc(scores, labels) == pytest.approx(pairwise)
    assert auroc(np.array([0.1, 0.9]), np.array([0, 1])) == 1.0
    assert math.isnan(auroc(np.array([0.1, 0.9]), np.array([1, 1])))


def test_reliability_and_ece():
    p = np.array([0.05, 0.05, 0.95, 0.95, 0.55, 0.55])
    t = np.array([0, 0, 1, 1, 1, 0])
    r = reliability(p, t, bins=10)
    assert r["count"].sum() == 6
    assert r["frequency"][9] == 1.0 and r["confidence"][9] == pytest.approx(0.95)
    # ECE = 2/6·0.05 + 2/6·0.05 + 2/6·|0.5 − 0.55|
    assert r["ece"] == pytest.approx((0.05 + 0.05 + 0.05) * 2 / 6)


def test_uncertainty_error_overlap():
    u = np.array([0.0, 0.16, 0.24, 0.0, 0.16])
    err = np.array([0, 1, 1, 0, 0])
    r = uncertainty_error_overlap(u, err)
    assert r["ueo"] == pytest.approx(2 * 2 / (3 + 2))
    # τ = 0 gives 0.8, τ = 0.16 gives 2·1 / (1 + 2): the best is τ = 0.
    assert r["ueo_max"] == pytest.approx(0.8)


def test_uncertainty_error_overlap_matches_every_threshold_on_continuous_uncertainty():
    rng = np.random.default_rng(3)
    u = np.round(rng.random(4000) ** 3, 4)  # many distinct values, many ties, many zeros after rounding
    u[:500] = 0.0
    err = (u + 0.3 * rng.random(4000)) > 0.5  # errors where the uncertainty is high, mostly
    brute = max(dice(u > tau, err) for tau in np.unique(u)[:-1])
    r = uncertainty_error_overlap(u, err)
    assert r["ueo_max"] == pytest.approx(brute, abs=1e-12) and r["ueo_max"] > r["ueo"]
    assert r["ueo"] == pytest.approx(dice(u > 0, err))
    assert uncertainty_error_overlap(np.zeros(10), np.zeros(10)) == {"ueo": 1.0, "ueo_max": 1.0}


def test_spacing_from_an_oblique_affine():
    angle = np.deg2rad(30)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.9, 1.1, 2.5])
    assert spacing_from_affine(affine) == pytest.approx((0.9, 1.1, 2.5))
