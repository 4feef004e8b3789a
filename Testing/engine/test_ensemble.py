"""Ensemble aggregation on hand-made members."""

import torch

from DiffSegExtension.data.loading import load_case
from DiffSegExtension.data.preparation import prepare_volume
from DiffSegExtension.diffusion.schedule import NoiseSchedule
from DiffSegExtension.ensemble import aggregate, binarise
from DiffSegExtension.inference.ensemble_sampling import sample_ensemble
from DiffSegExtension.model_card import load_model


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


def test_member_chunks_equal_runs_with_fewer_members(tiny_run, phantom_cases):
    """Members are keyed by (seed, slice, member): chunks of an ensemble equal smaller ensembles."""
    model = load_model(tiny_run)
    case = load_case(phantom_cases / "phantom3", model.modalities, with_label=True)
    prepared = prepare_volume(case, model.modalities, model.config.preprocess, model.config.network.size_multiple)
    images, ids = prepared.images[5:8], prepared.source_slices[5:8]
    schedule = NoiseSchedule.from_config(model.config.diffusion)
    common = dict(sampler="dpmpp", steps=2, seed=7, batch_size=4)
    full = sample_ensemble(model.network, schedule, images, ids, members=3, **common)
    chunks = torch.cat([sample_ensemble(model.network, schedule, images, ids, members=1, first_member=m, **common)
                        for m in range(3)])
    assert torch.equal(chunks, full)
    for k in (1, 2):
        assert torch.equal(sample_ensemble(model.network, schedule, images, ids, members=k, **common), full[:k])
    assert not torch.equal(full[0], full[1]), "members must differ (independent noise)"
