"""The hybrid training loss of improved DDPM: ε-MSE + the variational-bound term for the variance.

Masks are encoded as x_0 ∈ {−1, +1} (background, tumour), one channel per region. Every term is
averaged over the mask channels' pixels only; the image channels are the condition and are never noised or scored.
"""

from __future__ import annotations

import math

import torch

from DiffSegExtension.diffusion.schedule import NoiseSchedule


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) ‖ N(mean2, e^logvar2)) element-wise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log p(x) of data in [−1, 1] quantised to 256 bins under N(mean, e^{2 log_scale}); edge bins open-ended."""
    centered = x - mean
    inv_std = torch.exp(-log_scale)
    cdf_plus = _standard_normal_cdf(inv_std * (centered + 1.0 / 255.0))
    cdf_min = _standard_normal_cdf(inv_std * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))


def hybrid_loss(
    schedule: NoiseSchedule, model_output: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor,
    noise: torch.Tensor, weights: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Per-sample losses for one batch of R region channels.

    model_output (B, 2R, H, W) = (R targets ε̂ or v̂, R variance interpolations); x0, x_t, noise
    (B, R, H, W); t (B,) int64; weights (B, R) ≥ 0 per region channel (0 = not annotated in this
    sample, so not scored; ``None`` = all 1). Returns ``mse`` (B,) of the targets (ε or v), ``vb`` (B,)
    in bits per pixel, and ``loss`` = mse + vb (B,), each the weighted mean over the scored channels.
    The vb term sees the mean prediction detached, so it trains the variance only (as in improved DDPM).
    """
    regions = x0.shape[1]
    first, v = model_output[:, :regions], model_output[:, regions:2 * regions]
    if weights is None:
        weights = torch.ones(x0.shape[:2], device=x0.device)
    weights = weights.to(x0.device, torch.float32)
    norm = weights.sum(dim=1).clamp(min=1e-8)

    def reduce(per_pixel: torch.Tensor) -> torch.Tensor:
        return (per_pixel.mean(dim=(2, 3)) * weights).sum(dim=1) / norm

    mse = reduce((schedule.training_target(x0, noise, t) - first) ** 2)
    eps = schedule.epsilon_from_prediction(first.detach(), x_t, t)
    x0_frozen = schedule.predict_x0(x_t, t, eps)
    model_mean = schedule.posterior_mean(x0_frozen, x_t, t)
    model_log_var = schedule.learned_log_variance(v, t)
    true_mean = schedule.posterior_mean(x0, x_t, t)
    true_log_var = NoiseSchedule._at(schedule.posterior_log_variance_clipped, t, x_t)
    kl = reduce(normal_kl(true_mean, true_log_var, model_mean, model_log_var)) / math.log(2.0)
    nll = -reduce(discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_log_var)) / math.log(2.0)
    vb = torch.where(t == 0, nll, kl)
    return {"loss": mse + vb, "mse": mse, "vb": vb}
