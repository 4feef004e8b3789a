"""Ensemble aggregation on hand-made members."""

import torch

from DiffSegExtension.ensemble import aggregate, binarise


def test_aggregate_hand_made_members():
    # Five members over four pixels: votes 0/5, 2/5, 3/5, 5/5.
    members = torch.tensor([
        [0, 1, 1, 1],
        [0, 1, 1, 1],
        [0, 0, 1, 1],
        [0, 0, 0, 1],
        [0, 0, 0, 1],
    ], dtype=torch.float32)
    r = aggregate(members)
    assert torch.allclose(r.probability, torch.tensor([0.0, 0.4, 0.6, 1.0]))
    assert r.mask.tolist() == [0, 0, 1, 1]
    assert r.mask.dtype == torch.uint8
    assert torch.allclose(r.uncertainty, torch.tensor([0.0, 0.24, 0.24, 0.0]))
    assert r.entropy[0] == 0 and r.entropy[3] == 0
    assert torch.allclose(r.entropy[1], -(0.4 * torch.log2(torch.tensor(0.4)) + 0.6 * torch.log2(torch.tensor(0.6))))


def test_tie_counts_as_tumour_and_uncertainty_peaks_at_a_quarter():
    r = aggregate(torch.tensor([[1.0], [0.0]]))
    assert r.mask.item() == 1 and r.uncertainty.item() == 0.25 and r.entropy.item() == 1.0


def test_binarise_thresholds_at_half_on_the_mask_scale():
    x = torch.tensor([-1.0, -0.01, 0.0, 0.3, 1.0])
    assert binarise(x).tolist() == [0, 0, 1, 1, 1]
