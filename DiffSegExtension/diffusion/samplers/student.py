"""The sampler a distilled few-step student is trained for (``training/distillation.py``).

Deterministic DDIM (η = 0) over K passes at the K + 1 evenly spaced timesteps except t = 0, the pass
the other samplers end with: at t = 0 the noise is ≈ 1 % of the signal, so that pass changes the sample
by almost nothing, and a student of K passes spends all K where they matter. The output is the last
pass's clipped x̂_0, shifted by the student's calibrated per-region ``thresholds`` τ_r when given:
x̂_0 − τ_r, so that a member marks region r where x̂_0 ≥ τ_r (``calibrate`` in training/distillation.py).
"""

from __future__ import annotations

import torch

from DiffSegExtension.diffusion.samplers.ddim import DDIMSampler
from DiffSegExtension.diffusion.schedule import spaced_timesteps


class StudentSampler(DDIMSampler):
    def __init__(self, schedule, steps: int, thresholds: list[float] | None = None):
        super().__init__(schedule, steps, eta=0.0)
        self.thresholds = None if thresholds is None else torch.tensor(thresholds, dtype=torch.float32)

    def step(self, model_output, k, x, generators):
        out = super().step(model_output, k, x, generators)
        if k > 0 or self.thresholds is None:
            return out
        if len(self.thresholds) != x.shape[1]:
            raise ValueError(f"{len(self.thresholds)} thresholds for {x.shape[1]} regions")
        return (out - self.thresholds.to(out.device)[None, :, None, None]).clamp(-1.0, 1.0)

    @staticmethod
    def pass_timesteps(num_timesteps: int, steps: int) -> list[int]:
        """K = ``steps`` of the K + 1 evenly spaced timesteps, all but t = 0 (e.g. K = 2: 500, 999)."""
        if not 1 <= steps < num_timesteps:
            raise ValueError(f"steps must be in [1, {num_timesteps - 1}], got {steps}")
        return spaced_timesteps(num_timesteps, steps + 1)[1:]
