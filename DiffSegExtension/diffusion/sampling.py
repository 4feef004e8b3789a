"""The sampling loop: drives any :class:`Sampler` over a batch of (slice × member) samples."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from DiffSegExtension.diffusion.samplers.base import Sampler, per_sample_noise


def sample_generators(seed: int, keys: list[tuple[int, int]]) -> list[torch.Generator]:
    """One CPU generator per (slice index, member index), derived from ``seed`` only.

    The same (seed, slice, member) always gets the same noise, whatever batch it is sampled in,
    so re-running a slice range reproduces the whole-volume result for those slices.
    """
    generators = []
    for slice_index, member in keys:
        state = np.random.SeedSequence([int(seed), int(slice_index), int(member)]).generate_state(1, dtype=np.uint64)[0]
        generators.append(torch.Generator().manual_seed(int(state)))
    return generators


@torch.inference_mode()
def sample_masks(
    model: nn.Module,
    condition: torch.Tensor,
    sampler: Sampler,
    generators: list[torch.Generator],
    on_step: Callable[[], None] | None = None,
    regions: int = 1,
) -> torch.Tensor:
    """Reverse-diffuse one noisy mask per row of ``condition``.

    condition (B, C, H, W) float32: the network's condition channels (:func:`condition_input`);
    generators: one per row; ``regions``: R, the number of mask channels. The network's target
    channels are turned into ε (per the schedule's ``prediction``) before the sampler sees them.
    Returns (B, R, H, W) x̂_0 in [−1, 1] (−1 background, +1 region). ``on_step`` is called after
    each of the ``len(sampler)`` network passes (progress reporting, cancellation points).
    """
    batch = condition.shape[0]
    x = per_sample_noise(condition.new_empty(batch, regions, *condition.shape[2:]), generators)
    for k in reversed(range(len(sampler))):
        t = sampler.model_timestep(k, batch).to(condition.device)
        output = model(torch.cat([condition, x], dim=1), t).float()
        if sampler.schedule.prediction != "epsilon":
            index = torch.full((batch,), k, dtype=torch.long)
            eps = sampler.schedule.epsilon_from_prediction(output[:, :regions], x, index)
            output = torch.cat([eps, output[:, regions:]], dim=1)
        x = sampler.step(output, k, x, generators)
        if on_step is not None:
            on_step()
    return x
