"""The sampler interface shared by DDPM, DDIM and DPM-Solver++."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from DiffSegExtension.diffusion.schedule import NoiseSchedule, spaced_timesteps


def per_sample_noise(like: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
    """Standard normal noise shaped like ``like`` (B, ...), row b drawn from ``generators[b]``.

    One generator per sample makes every (slice, member) reproducible whatever batch it runs in.
    """
    if len(generators) != like.shape[0]:
        raise ValueError("need one generator per sample")
    return torch.stack([torch.randn(like.shape[1:], generator=g) for g in generators]).to(like.device, like.dtype)


class Sampler(ABC):
    """Reverse diffusion over K respaced timesteps t_{K−1} > … > t_0 of the training schedule.

    The loop calls the network once per index k = K−1 … 0 (one pass per step; ``len(self)`` = K) with
    ``self.model_timestep(k)`` and hands the output to :meth:`step`, which returns the next sample;
    after k = 0 the sample is the x̂_0 estimate in [−1, 1]. x̂_0 is clipped to [−1, 1] at every step
    (the seed's ``clip_denoised``). Samplers may keep state between steps: use a new one per run.
    """

    def __init__(self, schedule: NoiseSchedule, steps: int):
        self.timesteps = self.pass_timesteps(schedule.num_timesteps, steps)
        self.schedule = schedule.respace(self.timesteps)

    @staticmethod
    def pass_timesteps(num_timesteps: int, steps: int) -> list[int]:
        """The training timesteps of the ``steps`` passes (ascending): evenly spaced from 0 to T−1."""
        return spaced_timesteps(num_timesteps, steps)

    def __len__(self) -> int:
        return len(self.timesteps)

    def model_timestep(self, k: int, batch: int) -> torch.Tensor:
        """(batch,) int64: the training timestep to feed the network at index k."""
        return self.schedule.timestep_map[k].expand(batch).clone()

    def predict_x0(self, eps: torch.Tensor, k: int, x: torch.Tensor) -> torch.Tensor:
        t = torch.full((x.shape[0],), k, dtype=torch.long)
        return self.schedule.predict_x0(x, t, eps).clamp(-1.0, 1.0)

    @abstractmethod
    def step(self, model_output: torch.Tensor, k: int, x: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
        """One reverse step from index k to k−1.

        model_output (B, R or 2R, H, W): the first R channels = ε̂ per region, the next R (if present) =
        learned-variance v per region. x (B, R, H, W): the current sample. Returns (B, R, H, W).
        """
