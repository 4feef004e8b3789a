"""Noise schedule quantities against their closed forms, and respacing."""

import numpy as np
import pytest
import torch

from DiffSegExtension.config import DiffusionConfig
from DiffSegExtension.diffusion.schedule import NoiseSchedule, linear_betas, spaced_timesteps


@pytest.fixture(scope="module")
def schedule():
    return NoiseSchedule.from_config(DiffusionConfig())


def test_linear_betas_match_the_seed():
    betas = linear_betas(DiffusionConfig())
    assert betas.shape == (1000,)
    assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.02)
    assert np.allclose(np.diff(betas), (0.02 - 1e-4) / 999)


def test_cumulative_products_and_posterior_against_closed_forms(schedule):
    betas = linear_betas(DiffusionConfig())
    t = 417
    abar = np.prod(1 - betas[: t + 1])
    abar_prev = np.prod(1 - betas[:t])
    assert float(schedule.alphas_cumprod[t]) == pytest.approx(abar, rel=1e-5)
    assert float(schedule.posterior_variance[t]) == pytest.approx(betas[t] * (1 - abar_prev) / (1 - abar), rel=1e-5)
    # ᾱ_T is nearly zero: x_T is (almost) pure noise.
    assert float(schedule.alphas_cumprod[-1]) < 1e-4


def test_q_sample_and_predict_x0_are_inverse(schedule):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 1, 8, 8, generator=g)
    noise = torch.randn(4, 1, 8, 8, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    xt = schedule.q_sample(x0, t, noise)
    assert torch.allclose(schedule.predict_x0(xt, t, noise), x0, atol=1e-3)
    assert torch.allclose(schedule.predict_eps(xt, t, x0), noise, atol=1e-3)
    # Variance of x_t for unit-variance x0 and noise is ᾱ + (1 − ᾱ) = 1 (variance preserving).
    big = schedule.q_sample(torch.randn(20000, generator=g), torch.full((20000,), 300), torch.randn(20000, generator=g))
    assert float(big.var()) == pytest.approx(1.0, abs=0.05)


def test_posterior_mean_is_exact_gaussian_conditioning(schedule):
    """μ̃(x0, x_t) equals the Gaussian conditional mean derived from the joint of (x_{t−1}, x_t)."""
    t = 250
    b, abar, abar_prev = (float(v[t]) for v in (schedule.betas, schedule.alphas_cumprod, schedule.alphas_cumprod_prev))
    x0, xt = torch.tensor([[0.7]]), torch.tensor([[-0.2]])
    # x_{t−1} = √ᾱ' x0 + √(1−ᾱ') ε1;  x_t = √(1−β) x_{t−1} + √β ε2
    mean_prev, var_prev = np.sqrt(abar_prev) * 0.7, 1 - abar_prev
    cov = np.sqrt(1 - b) * var_prev
    var_t = (1 - b) * var_prev + b
    expected = mean_prev + cov / var_t * (-0.2 - np.sqrt(1 - b) * mean_prev)
    got = schedule.posterior_mean(x0, xt, torch.tensor([t]))
    assert float(got) == pytest.approx(expected, rel=1e-4)


def test_spaced_timesteps():
    assert spaced_timesteps(1000, 1000) == list(range(1000))
    s = spaced_timesteps(1000, 10)
    assert len(s) == 10 and s[0] == 0 and s[-1] == 999
    assert all(b > a for a, b in zip(s, s[1:]))
    with pytest.raises(ValueError):
        spaced_timesteps(1000, 0)


def test_respaced_schedule_keeps_alphas_cumprod_at_kept_steps(schedule):
    kept = spaced_timesteps(1000, 20)
    respaced = schedule.respace(kept)
    assert respaced.num_timesteps == 20
    assert torch.allclose(respaced.alphas_cumprod, schedule.alphas_cumprod[kept], rtol=1e-5)
    assert respaced.timestep_map.tolist() == kept
    # Respacing the full set is the identity.
    same = schedule.respace(list(range(1000)))
    assert torch.allclose(same.betas, schedule.betas)


def test_learned_log_variance_spans_beta_tilde_to_beta(schedule):
    t = torch.tensor([100])
    lo = schedule.learned_log_variance(torch.full((1, 1, 1, 1), -1.0), t)
    hi = schedule.learned_log_variance(torch.full((1, 1, 1, 1), 1.0), t)
    assert float(lo) == pytest.approx(float(schedule.posterior_log_variance_clipped[100]))
    assert float(hi) == pytest.approx(float(torch.log(schedule.betas[100])))
