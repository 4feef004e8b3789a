"""DDIM (Song et al. 2021): η = 0 is deterministic given the start noise, η = 1 is DDPM-like."""

from __future__ import annotations

import torch

from DiffSegExtension.diffusion.samplers.base import Sampler, per_sample_noise


class DDIMSampler(Sampler):
    def __init__(self, schedule, steps: int, eta: float = 0.0):
        super().__init__(schedule, steps)
        if eta < 0:
            raise ValueError("DDIM eta must be >= 0")
        self.eta = float(eta)

    def step(self, model_output, k, x, generators):
        x0 = self.predict_x0(model_output[:, :x.shape[1]], k, x)
        if k == 0:
            return x0
        t = torch.full((x.shape[0],), k, dtype=torch.long)
        eps = self.schedule.predict_eps(x, t, x0)
        a_t = self.schedule.alphas_cumprod[k]
        a_prev = self.schedule.alphas_cumprod[k - 1]
        sigma = self.eta * torch.sqrt((1 - a_prev) / (1 - a_t)) * torch.sqrt(1 - a_t / a_prev)
        x_prev = torch.sqrt(a_prev) * x0 + torch.sqrt(1 - a_prev - sigma**2) * eps
        if self.eta > 0:
            x_prev = x_prev + sigma * per_sample_noise(x, generators)
        return x_prev
