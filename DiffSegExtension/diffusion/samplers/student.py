"""The sampler a distilled few-step student is trained for (``training/distillation.py``).

Deterministic DDIM (η = 0) over K passes at the K + 1 evenly spaced timesteps except t = 0 — that is,
without the pass at t = 0 that the other samplers end with. At t = 0 the noise is ≈ 1 % of the signal, so that last pass
changes the sample by almost nothing; a student of K passes spends all K where they matter. The output
is the last pass's clipped x̂_0.
"""

from __future__ import annotations

from DiffSegExtension.diffusion.samplers.ddim import DDIMSampler
from DiffSegExtension.diffusion.schedule import spaced_timesteps


class StudentSampler(DDIMSampler):
    def __init__(self, schedule, steps: int):
        super().__init__(schedule, steps, eta=0.0)

    @staticmethod
    def pass_timesteps(num_timesteps: int, steps: int) -> list[int]:
        """K = ``steps`` of the K + 1 evenly spaced timesteps, all but t = 0 (e.g. K = 2: 500, 999)."""
        if not 1 <= steps < num_timesteps:
            raise ValueError(f"steps must be in [1, {num_timesteps - 1}], got {steps}")
        return spaced_timesteps(num_timesteps, steps + 1)[1:]
