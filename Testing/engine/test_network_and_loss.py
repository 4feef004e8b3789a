"""Network presets and the hybrid loss."""

import pytest
import torch

from DiffSegExtension.config import ModelConfig, NetworkConfig, preset
from DiffSegExtension.diffusion.losses import discretized_gaussian_log_likelihood, hybrid_loss, normal_kl
from DiffSegExtension.diffusion.schedule import NoiseSchedule
from DiffSegExtension.errors import DiffSegInputError
from DiffSegExtension.network import DenoisingUNet, count_flops, count_parameters


def test_paper_preset_has_the_seed_unet_size():
    config = preset("paper", ["t1", "t1ce", "t2", "flair"])
    with torch.device("meta"):
        model = DenoisingUNet(config.network)
    assert count_parameters(model) == pytest.approx(113.67e6, rel=1e-3)
    assert config.network.in_channels == 5 and config.network.out_channels == 2


def test_small_preset_fits_the_cpu_budget():
    model = DenoisingUNet(preset("small", ["flair"]).network)
    assert count_flops(model, 224, 224) < 3.5e9
    out = model(torch.zeros(2, 2, 64, 96), torch.tensor([0, 999]))
    assert out.shape == (2, 2, 64, 96)


def test_config_round_trips_through_json_dict():
    import json

    config = preset("tiny", ["flair", "t1"], pixel_spacing_mm=1.0)
    again = ModelConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config


def test_config_rejects_bad_values():
    with pytest.raises(DiffSegInputError, match="modalities"):
        preset("tiny", ["dwi"])
    with pytest.raises(DiffSegInputError, match="unknown preset"):
        preset("huge", ["flair"])
    with pytest.raises(DiffSegInputError, match="unknown fields"):
        ModelConfig.from_dict({"network": {"modalities": ["flair"], "colour": 3}})
    with pytest.raises(DiffSegInputError, match="norm_num_groups"):
        NetworkConfig(("flair",), (12, 16), (False, False), 1, 8, norm_num_groups=8)


def test_kl_and_likelihood_closed_forms():
    z = torch.zeros(1)
    assert normal_kl(z, z, z, z).item() == pytest.approx(0.0)
    # KL(N(1,1) || N(0,1)) = 1/2
    assert normal_kl(torch.ones(1), z, z, z).item() == pytest.approx(0.5)
    # A sharp Gaussian (σ ≪ bin width) on the right value puts all its mass in the (open) edge bins.
    ll = discretized_gaussian_log_likelihood(torch.tensor([1.0, -1.0]), torch.tensor([1.0, -1.0]), torch.full((2,), -10.0))
    assert torch.allclose(ll.exp(), torch.ones(2), atol=1e-3)
    # With σ = e^-5 the edge bin [1 − 1/255, ∞) holds Φ((1/255)/σ) of the mass.
    ll = discretized_gaussian_log_likelihood(torch.tensor([1.0]), torch.tensor([1.0]), torch.tensor([-5.0]))
    expected = 0.5 * (1 + torch.erf(torch.tensor(1 / 255 / torch.exp(torch.tensor(-5.0)).item() / 2**0.5)))
    assert ll.exp().item() == pytest.approx(expected.item(), rel=1e-4)


def test_hybrid_loss_is_minimal_for_the_true_noise_and_posterior_variance():
    schedule = NoiseSchedule.from_config(preset("tiny", ["flair"]).diffusion)
    g = torch.Generator().manual_seed(0)
    x0 = torch.sign(torch.randn(4, 1, 8, 8, generator=g))
    noise = torch.randn(4, 1, 8, 8, generator=g)
    t = torch.tensor([0, 5, 300, 900])
    xt = schedule.q_sample(x0, t, noise)
    perfect = torch.cat([noise, -torch.ones_like(noise)], 1)  # v = −1 → σ² = β̃ (the true posterior)
    wrong = torch.cat([noise + 0.3, torch.ones_like(noise)], 1)
    good, bad = hybrid_loss(schedule, perfect, x0, xt, t, noise), hybrid_loss(schedule, wrong, x0, xt, t, noise)
    assert torch.allclose(good["mse"], torch.zeros(4))
    assert (good["vb"][1:] < 1e-4).all(), "KL is zero when mean and variance are exact"
    assert (bad["loss"] > good["loss"]).all()
    # The variance term must not train ε: its gradient w.r.t. ε̂ is zero.
    out = wrong.clone().requires_grad_(True)
    hybrid_loss(schedule, out, x0, xt, t, noise)["vb"].sum().backward()
    assert torch.all(out.grad[:, 0] == 0) and out.grad[:, 1].abs().sum() > 0
