"""Sample N ensemble members for S prepared slices, batched as (slice × member) items."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from DiffSegExtension.diffusion.sampling import sample_generators, sample_masks
from DiffSegExtension.diffusion.samplers import make_sampler
from DiffSegExtension.diffusion.schedule import NoiseSchedule
from DiffSegExtension.ensemble import binarise


def sample_ensemble(
    network: nn.Module,
    schedule: NoiseSchedule,
    condition: torch.Tensor,
    slice_ids: list[int],
    *,
    members: int,
    sampler: str,
    steps: int,
    seed: int,
    batch_size: int,
    device: torch.device | str = "cpu",
    on_step: Callable[[], None] | None = None,
    sampler_options: dict | None = None,
    first_member: int = 0,
    regions: int = 1,
    known: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Binary member masks of ``regions`` region channels for every slice.

    condition (S, C, H, W) float32 condition channels (:func:`~DiffSegExtension.network.condition_input`
    of the normalised modalities); ``slice_ids`` (S,) stable ids of the slices
    (their source indices), which with ``seed`` and the member index fix each sample's noise.
    Members ``first_member`` … ``first_member + members − 1`` are sampled, so an N-member ensemble
    can be grown or timed in chunks: the first k members of any run are the k-member run.
    Items are processed in batches of ``batch_size`` (slice, member) pairs, one network pass per
    sampler step and batch (``on_step`` is called after each).
    ``known`` = (values, mask), both (S, R, H, W): voxels known to be region (+1) or background (−1) where
    mask is set; every member holds them exactly (see :func:`~DiffSegExtension.diffusion.sampling.sample_masks`).
    Returns (N, S, R, H, W) uint8 in {0, 1} on the CPU.
    """
    if members < 1:
        raise ValueError("members must be >= 1")
    count, _, height, width = condition.shape
    items = [(s, m) for s in range(count) for m in range(first_member, first_member + members)]
    out = torch.empty(members, count, regions, height, width, dtype=torch.uint8)
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        rows = condition[[s for s, _ in chunk]].to(device)
        generators = sample_generators(seed, [(slice_ids[s], m) for s, m in chunk])
        run = make_sampler(sampler, schedule, steps, **(sampler_options or {}))
        rows_known = None if known is None else tuple(k[[s for s, _ in chunk]] for k in known)
        x0 = sample_masks(network, rows, run, generators, on_step=on_step, regions=regions, known=rows_known)
        masks = binarise(x0).to(torch.uint8).cpu()
        for (s, m), mask in zip(chunk, masks):
            out[m - first_member, s] = mask
    return out


def passes_needed(slices: int, members: int, steps: int, batch_size: int) -> int:
    """Network passes (forward calls) to sample ``members`` for ``slices`` slices."""
    return math.ceil(slices * members / batch_size) * steps
