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
    known: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Reverse-diffuse one noisy mask per row of ``condition``.

    condition (B, C, H, W) float32: the network's condition channels (:func:`condition_input`);
    generators: one per row; ``regions``: R, the number of mask channels. The network's target
    channels are turned into ε (per the schedule's ``prediction``) before the sampler sees them.
    Returns (B, R, H, W) x̂_0 in [−1, 1] (−1 background, +1 region). ``on_step`` is called after
    each of the ``len(sampler)`` network passes (progress reporting, cancellation points).

    ``known`` = (values, mask), both (B, R, H, W): voxels whose mask value (bool) is set are known to be
    ``values`` (−1 background, +1 region). They are imposed inpainting-style: before every pass x holds
    there the known x̂_0 noised to the pass's level, and the result holds them exactly (:func:`impose_known`).
    """
    batch = condition.shape[0]
    x = per_sample_noise(condition.new_empty(batch, regions, *condition.shape[2:]), generators)
    if known is not None:
        known = (known[0].to(condition.device, torch.float32), known[1].to(condition.device, torch.bool))
        x = impose_known(x, known, sampler, len(sampler) - 1, generators)
    for k in reversed(range(len(sampler))):
        t = sampler.model_timestep(k, batch).to(condition.device)
        output = model(torch.cat([condition, x], dim=1).contiguous(memory_format=torch.channels_last), t).float()
        if sampler.schedule.prediction != "epsilon":
            index = torch.full((batch,), k, dtype=torch.long)
            eps = sampler.schedule.epsilon_from_prediction(output[:, :regions], x, index)
            output = torch.cat([eps, output[:, regions:]], dim=1)
        x = sampler.step(output, k, x, generators)
        if known is not None:
            x = impose_known(x, known, sampler, k - 1, generators)
        if on_step is not None:
            on_step()
    return x


def impose_known(x: torch.Tensor, known: tuple[torch.Tensor, torch.Tensor], sampler: Sampler, k: int,
                 generators: list[torch.Generator]) -> torch.Tensor:
    """x (B, R, H, W) at schedule index ``k`` with its known voxels replaced by q(x_k | known x̂_0).

    k = −1 means after the last step: known voxels get their values exactly. The noise is drawn from the
    rows' own generators, and only for rows with a known voxel, so a row without any samples exactly as
    without ``known``.
    """
    values, mask = known
    rows = [b for b in range(x.shape[0]) if bool(mask[b].any())]
    if not rows:
        return x
    if k < 0:
        return torch.where(mask, values, x)
    noise = torch.zeros_like(x)
    noise[rows] = per_sample_noise(x[rows], [generators[b] for b in rows])
    t = torch.full((x.shape[0],), k, dtype=torch.long)
    return torch.where(mask, sampler.schedule.q_sample(values, t, noise), x)
