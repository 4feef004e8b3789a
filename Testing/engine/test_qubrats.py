"""QU-BraTS uncertainty scores against a direct transcription of the organisers' per-threshold loop."""

import numpy as np

from DiffSegExtension.evaluation.qubrats import THRESHOLDS, qubrats_curves, qubrats_scores

EPS = np.finfo(np.float32).eps


def organisers_curves(gt, pred, unc, brain, thresholds):
    """The loop of RagMeh11/QU-BraTS ``make()``: filter voxels with uncertainty > τ, then Dice / FTP / FTN."""
    dice, ftp, ftn = [], [], []
    gt, pred, brain = gt.astype("float32"), pred.astype("float32"), brain.astype("float32")
    for th in thresholds:
        keep = np.ones_like(unc, dtype="float32")
        keep[unc > th] = 0.0
        g, p = gt * keep, pred * keep
        inter, union = np.sum(p * g), np.sum(p) + np.sum(g)
        dice.append(1.0 if inter == 0.0 and union == 0.0 else 2.0 * inter / union)
        tp = pred * gt * brain
        ftp.append((tp.sum() - (tp * keep).sum()) / (tp.sum() + EPS))
        tn = (1 - pred) * (1 - gt) * brain
        ftn.append((tn.sum() - (tn * keep).sum()) / (tn.sum() + EPS))
    return np.array(dice), np.array(ftp), np.array(ftn)


def sklearn_style_auc(thresholds, values):
    """sklearn.metrics.auc on the decreasing τ grid (it detects the direction), divided by 100."""
    return float(-np.trapezoid(values, thresholds)) / 100.0 if hasattr(np, "trapezoid") else \
        float(-np.trapz(values, thresholds)) / 100.0


def random_case(seed):
    rng = np.random.default_rng(seed)
    shape = (20, 18, 12)
    gt = rng.random(shape) < 0.2
    pred = np.where(rng.random(shape) < 0.85, gt, ~gt)
    # Uncertain where wrong more often than where right: a useful map.
    unc = np.where(pred != gt, rng.uniform(30, 100, shape), rng.uniform(0, 70, shape)).round()
    brain = np.ones(shape, dtype=bool)
    brain[:2] = False
    return gt, pred, unc, brain


def test_curves_match_the_organisers_loop():
    for seed in range(3):
        gt, pred, unc, brain = random_case(seed)
        ours = qubrats_curves(gt, pred, unc, brain)
        theirs = organisers_curves(gt, pred, unc, brain, THRESHOLDS)
        for key, reference in zip(("dice", "ftp", "ftn"), theirs):
            assert np.allclose(ours[key], reference, atol=1e-6), key


def test_scores_are_the_aucs_combined():
    gt, pred, unc, brain = random_case(4)
    scores = qubrats_scores(gt, pred, unc, brain)
    dice, ftp, ftn = organisers_curves(gt, pred, unc, brain, THRESHOLDS)
    expected = [sklearn_style_auc(THRESHOLDS, c) for c in (dice, ftp, ftn)]
    assert np.allclose([scores["qu_dice_auc"], scores["qu_ftp_auc"], scores["qu_ftn_auc"]], expected, atol=1e-9)
    assert np.isclose(scores["qu_score"], (expected[0] + 1 - expected[1] + 1 - expected[2]) / 3)


def test_informative_uncertainty_scores_higher_than_uninformative():
    gt, pred, unc, brain = random_case(5)
    rng = np.random.default_rng(1)
    informative = qubrats_scores(gt, pred, unc, brain)["qu_score"]
    shuffled = qubrats_scores(gt, pred, rng.permutation(unc.ravel()).reshape(unc.shape), brain)["qu_score"]
    certain = qubrats_scores(gt, pred, np.zeros_like(unc), brain)
    assert informative > shuffled
    # A fully certain map filters nothing: the Dice curve is flat at the plain Dice, the ratios are 0.
    plain = 2 * (gt & pred).sum() / (gt.sum() + pred.sum())
    assert np.isclose(certain["qu_dice_auc"], plain) and certain["qu_ftp_auc"] == 0 and certain["qu_ftn_auc"] == 0


def test_empty_truth_and_prediction_give_dice_one():
    empty = np.zeros((4, 4, 4), dtype=bool)
    scores = qubrats_scores(empty, empty, np.zeros((4, 4, 4)), np.ones((4, 4, 4), dtype=bool))
    assert scores["qu_dice_auc"] == 1.0 and scores["qu_score"] == 1.0
