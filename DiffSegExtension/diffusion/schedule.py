"""Noise schedule quantities (Ho et al. 2020; Nichol & Dhariwal 2021) and their respacing.

Timestep indices are 0-based: t ∈ [0, T). ``alphas_cumprod[t]`` = ᾱ_t = ∏_{s≤t} (1 − β_s).
Quantities are computed in float64 and stored as float32 tensors; all per-timestep look-ups
broadcast a (B,) index tensor over a (B, ...) sample tensor.
"""

from __future__ import annotations

import numpy as np
import torch

from DiffSegExtension.config import DiffusionConfig


def linear_betas(config: DiffusionConfig) -> np.ndarray:
    """The seed's linear β schedule, scaled so that any T spans the same noise range as T = 1000."""
    scale = 1000.0 / config.timesteps
    return np.linspace(scale * config.beta_start, scale * config.beta_end, config.timesteps, dtype=np.float64)


def spaced_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """``steps`` evenly spaced training timesteps from 0 to T−1 inclusive (ascending, distinct)."""
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"steps must be in [1, {num_timesteps}], got {steps}")
    if steps == 1:
        return [num_timesteps - 1]
    stride = (num_timesteps - 1) / (steps - 1)
    return sorted({round(i * stride) for i in range(steps)})


class NoiseSchedule:
    """Closed-form quantities of the forward process q(x_t | x_0) and the posterior q(x_{t−1} | x_t, x_0).

    ``timestep_map[k]`` is the training timestep the network must be told for schedule index k:
    the identity for the full schedule, the kept timesteps for a respaced one. ``prediction`` is
    what the network's first output channel predicts (``epsilon`` or ``v``, see DiffusionConfig).
    """

    def __init__(self, betas: np.ndarray, timestep_map: list[int] | None = None, prediction: str = "epsilon"):
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or (betas <= 0).any() or (betas >= 1).any():
            raise ValueError("betas must be a 1D array in (0, 1)")
        self.num_timesteps = len(betas)
        self.prediction = prediction
        self.timestep_map = torch.tensor(timestep_map if timestep_map is not None else range(len(betas)))
        alphas_cumprod = np.cumprod(1.0 - betas)
        alphas_cumprod_prev = np.append(1.0, alphas_cumprod[:-1])
        posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        as_tensor = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
        self.betas_np, self.alphas_cumprod_np = betas, alphas_cumprod
        self.betas = as_tensor(betas)
        self.alphas_cumprod = as_tensor(alphas_cumprod)
        self.alphas_cumprod_prev = as_tensor(alphas_cumprod_prev)
        self.sqrt_alphas_cumprod = as_tensor(np.sqrt(alphas_cumprod))
        self.sqrt_one_minus_alphas_cumprod = as_tensor(np.sqrt(1.0 - alphas_cumprod))
        self.sqrt_recip_alphas_cumprod = as_tensor(np.sqrt(1.0 / alphas_cumprod))
        self.sqrt_recipm1_alphas_cumprod = as_tensor(np.sqrt(1.0 / alphas_cumprod - 1.0))
        self.posterior_variance = as_tensor(posterior_variance)
        # β̃_0 = 0: use β̃_1 there so the log stays finite (as in improved DDPM); a one-step schedule has
        # no β̃_1 and never samples noise, so β stands in.
        clipped = np.append(posterior_variance[1], posterior_variance[1:]) if len(betas) > 1 else betas
        self.posterior_log_variance_clipped = as_tensor(np.log(clipped))
        self.log_betas = as_tensor(np.log(betas))
        self.posterior_mean_coef1 = as_tensor(betas * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod))
        self.posterior_mean_coef2 = as_tensor((1.0 - alphas_cumprod_prev) * np.sqrt(1.0 - betas) / (1.0 - alphas_cumprod))

    @classmethod
    def from_config(cls, config: DiffusionConfig) -> "NoiseSchedule":
        return cls(linear_betas(config), prediction=config.prediction)

    def respace(self, timesteps: list[int]) -> "NoiseSchedule":
        """The schedule restricted to ``timesteps`` (ascending): β'_k = 1 − ᾱ_{t_k} / ᾱ_{t_{k−1}}.

        It keeps ᾱ at the kept timesteps exactly, so a network trained on the full schedule is
        called with the original timestep (``timestep_map``) and sees the noise level it knows.
        """
        if list(timesteps) != sorted(set(timesteps)) or timesteps[0] < 0 or timesteps[-1] >= self.num_timesteps:
            raise ValueError("respacing needs distinct ascending timesteps inside the schedule")
        kept = self.alphas_cumprod_np[timesteps]
        betas = 1.0 - kept / np.append(1.0, kept[:-1])
        return NoiseSchedule(betas, [int(self.timestep_map[t]) for t in timesteps], self.prediction)

    @staticmethod
    def _at(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """values[t] reshaped to broadcast over ``like`` (B, ...)."""
        return values.to(like.device)[t.to(like.device)].reshape(-1, *([1] * (like.ndim - 1)))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε."""
        return self._at(self.sqrt_alphas_cumprod, t, x0) * x0 + self._at(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x̂_0 = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t."""
        return self._at(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t - self._at(self.sqrt_recipm1_alphas_cumprod, t, x_t) * eps

    def predict_eps(self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """ε consistent with x_t and a (possibly clipped) x̂_0."""
        return (self._at(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t - x0) / self._at(self.sqrt_recipm1_alphas_cumprod, t, x_t)

    def training_target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network's first channel should output: ε, or v = √ᾱ ε − √(1 − ᾱ) x_0."""
        if self.prediction == "epsilon":
            return noise
        return self._at(self.sqrt_alphas_cumprod, t, x0) * noise - self._at(self.sqrt_one_minus_alphas_cumprod, t, x0) * x0

    def epsilon_from_prediction(self, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """ε̂ from the network's first channel: itself, or √ᾱ v̂ + √(1 − ᾱ) x_t for v-prediction."""
        if self.prediction == "epsilon":
            return output
        return self._at(self.sqrt_alphas_cumprod, t, x_t) * output + self._at(self.sqrt_one_minus_alphas_cumprod, t, x_t) * x_t

    def posterior_mean(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Mean of q(x_{t−1} | x_t, x_0)."""
        return self._at(self.posterior_mean_coef1, t, x_t) * x0 + self._at(self.posterior_mean_coef2, t, x_t) * x_t

    def learned_log_variance(self, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """log σ²_θ = f log β_t + (1 − f) log β̃_t with f = (v + 1) / 2 (improved DDPM's learned range)."""
        frac = (v + 1.0) / 2.0
        return frac * self._at(self.log_betas, t, v) + (1.0 - frac) * self._at(self.posterior_log_variance_clipped, t, v)
