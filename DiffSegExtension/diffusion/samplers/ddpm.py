"""Ancestral DDPM sampling with the learned variance (the seed's sampler; improved-DDPM respacing)."""

from __future__ import annotations

import torch

from DiffSegExtension.diffusion.samplers.base import Sampler, per_sample_noise


class DDPMSampler(Sampler):
    """x_{k−1} ~ N(μ̃(x̂_0, x_k), σ²_θ): the posterior mean at the clipped x̂_0 and the network's
    learned-range variance on the respaced schedule (β̃ if the network has no variance output)."""

    def step(self, model_output, k, x, generators):
        t = torch.full((x.shape[0],), k, dtype=torch.long)
        x0 = self.predict_x0(model_output[:, :x.shape[1]], k, x)
        mean = self.schedule.posterior_mean(x0, x, t)
        if k == 0:
            return mean
        if model_output.shape[1] > x.shape[1]:
            log_var = self.schedule.learned_log_variance(model_output[:, x.shape[1]:2 * x.shape[1]], t)
        else:
            log_var = self.schedule._at(self.schedule.posterior_log_variance_clipped, t, x)
        return mean + torch.exp(0.5 * log_var) * per_sample_noise(x, generators)
