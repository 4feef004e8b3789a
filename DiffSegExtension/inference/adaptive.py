"""Adaptive ensemble: sample every member only where the tumour can be.

A full ensemble samples N members on every brain slice, although on most slices, and on most of each
tumour slice, all members agree. The adaptive ensemble spends the work where members can disagree:

1. **Screen.** Member 0 is sampled on every slice, full size (the same noise, hence the same sample,
   as member 0 of the full ensemble). With ``screen_steps`` fewer than the members' steps, the screen
   is a cheaper sample of its own instead, used only to find the tumour, and every member (0 too) is
   sampled in the windows of step 3.
2. **Candidates.** Slices where the screen finds tumour inside the brain, widened by ``slice_margin``
   slices on each side, are the candidates. Each candidate gets a **window**: the bounding box of the
   screen's tumour on it and its ``slice_margin`` neighbours, widened by ``pixel_margin`` pixels, at least
   ``min_window`` on a side (the training crop, so the network sees inputs of the size it learnt on),
   a multiple of the network's size multiple, inside the slice.
3. **Members 1 … N − 1** (0 … N − 1 after a separate screen) are sampled on the candidate slices only,
   each inside its window (slices whose windows have the same size share batches); outside it they
   are background. Elsewhere, where the screen found nothing, every member is taken to agree with it
   (all background: probability 0, uncertainty 0).

The approximation is that tumour that the screen misses on a slice and on its neighbours, or that lies
farther than ``pixel_margin`` from anything it found, would not reach a majority of members.
``benchmarks/bench_speed.py`` measures what it costs in Dice, AUROC and QU-BraTS against the full
ensemble on validation subjects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from DiffSegExtension.diffusion.schedule import NoiseSchedule
from DiffSegExtension.inference.ensemble_sampling import passes_needed, sample_ensemble


@dataclass(frozen=True)
class AdaptiveSettings:
    """``slice_margin``: slices added on each side of the screen's tumour slices; ``pixel_margin`` and
    ``min_window``: pixels (at the network's pixel spacing); ``screen_steps``: sampler steps of a
    separate screen (``None``: member 0 is the screen)."""

    slice_margin: int = 2
    pixel_margin: int = 16
    min_window: int = 128
    screen_steps: int | None = None


@dataclass(frozen=True)
class AdaptiveWork:
    """What an adaptive run sampled: the screen (``screen_steps`` steps) on ``slices`` full slices of
    ``full_size`` (H, W) pixels; ``windowed_members`` members on each candidate slice inside its window,
    ``windows`` = {slice position: (top, bottom, left, right)}, half-open pixel bounds; ``passes``:
    the network passes (batched calls) all that took."""

    slices: int
    windows: dict[int, tuple[int, int, int, int]]
    full_size: tuple[int, int]
    screen_steps: int
    windowed_members: int
    passes: int

    @property
    def candidates(self) -> int:
        return len(self.windows)

    def window_fraction(self) -> float:
        """Mean window area over the candidates, as a fraction of the full slice (0 without candidates)."""
        areas = [(b - t) * (r - l) for t, b, l, r in self.windows.values()]
        return sum(areas) / (len(areas) * self.full_size[0] * self.full_size[1]) if areas else 0.0

    def full_slice_passes(self, steps: int) -> float:
        """Network work in units of one full-size slice pass: the screen everywhere, the members' ``steps``
        in the windows."""
        return self.screen_steps * self.slices + steps * self.windowed_members * self.candidates * self.window_fraction()


def candidate_slices(screen: torch.Tensor, slice_margin: int) -> torch.Tensor:
    """screen (S, H, W) bool, the screen's tumour (any region) inside the brain → (S,) bool: slices
    within ``slice_margin`` slices of one where it found tumour."""
    found = screen.flatten(1).any(dim=1).float()[None, None]
    width = 2 * slice_margin + 1
    return torch.nn.functional.max_pool1d(found, width, stride=1, padding=slice_margin)[0, 0] > 0


def tumour_window(screen: torch.Tensor, settings: AdaptiveSettings, multiple: int) -> tuple[int, int, int, int]:
    """screen (K, H, W) bool, the screen's tumour on a slice and its neighbours → (top, bottom, left,
    right): the box around it widened by ``pixel_margin``, at least ``min_window`` and a multiple of
    ``multiple`` on each side (or the whole side), shifted to lie inside the slice."""
    height, width = screen.shape[1:]
    rows, cols = screen.any(dim=(0, 2)).nonzero()[:, 0], screen.any(dim=(0, 1)).nonzero()[:, 0]
    if len(rows) == 0:
        raise ValueError("no tumour to put a window around")

    def span(found: torch.Tensor, size: int) -> tuple[int, int]:
        low, high = int(found[0]) - settings.pixel_margin, int(found[-1]) + 1 + settings.pixel_margin
        length = max(high - low, settings.min_window)
        length = min(size, -(-length // multiple) * multiple)
        start = min(max(0, (low + high) // 2 - length // 2), size - length)
        return start, start + length

    return (*span(rows, height), *span(cols, width))


def sample_adaptive(
    network: nn.Module,
    schedule: NoiseSchedule,
    condition: torch.Tensor,
    brain: torch.Tensor,
    slice_ids: list[int],
    *,
    members: int,
    sampler: str,
    steps: int,
    seed: int,
    batch_size: int,
    size_multiple: int,
    settings: AdaptiveSettings = AdaptiveSettings(),
    device: torch.device | str = "cpu",
    on_step: Callable[[], None] | None = None,
    on_plan: Callable[[int], None] | None = None,
    sampler_options: dict | None = None,
    regions: int = 1,
) -> tuple[torch.Tensor, AdaptiveWork]:
    """Member masks of an adaptive ensemble, in the layout of :func:`sample_ensemble`.

    condition (S, C, H, W) float32 and brain (S, H, W) bool of the prepared slices; ``slice_ids`` as in
    :func:`sample_ensemble`. ``on_plan`` is told the network passes the whole run takes once the
    candidates are known (after the screen). Returns (members (N, S, R, H, W) uint8 {0, 1}, work).
    """
    count, _, height, width = condition.shape
    common = dict(sampler=sampler, steps=steps, seed=seed, batch_size=batch_size, device=device, on_step=on_step,
                  sampler_options=sampler_options, regions=regions)
    separate = settings.screen_steps is not None and settings.screen_steps < steps
    screen_steps = settings.screen_steps if separate else steps
    first = sample_ensemble(network, schedule, condition, slice_ids, members=1,
                            **{**common, "steps": screen_steps})[0]  # (S, R, H, W)
    screen = first.bool().any(dim=1) & brain
    first_windowed = 0 if separate else 1
    chosen = candidate_slices(screen, settings.slice_margin).nonzero()[:, 0].tolist() if members > first_windowed else []
    m = settings.slice_margin
    windows = {s: tumour_window(screen[max(0, s - m):s + m + 1], settings, size_multiple) for s in chosen}
    groups: dict[tuple[int, int], list[int]] = {}
    for s, (top, bottom, left, right) in windows.items():
        groups.setdefault((bottom - top, right - left), []).append(s)
    windowed = members - first_windowed
    passes = (passes_needed(count, 1, screen_steps, batch_size)
              + sum(passes_needed(len(group), windowed, steps, batch_size) for group in groups.values()))
    if on_plan is not None:
        on_plan(passes)
    if separate:
        out = torch.zeros(members, *first.shape, dtype=torch.uint8)
    else:
        out = first.expand(members, -1, -1, -1, -1).clone()
    for group in groups.values():
        crops = torch.stack([condition[s, :, t:b, l:r] for s in group for t, b, l, r in [windows[s]]])
        sampled = sample_ensemble(network, schedule, crops, [slice_ids[s] for s in group], members=windowed,
                                  first_member=first_windowed, **common)  # (windowed, K, R, h, w)
        for k, s in enumerate(group):
            top, bottom, left, right = windows[s]
            out[first_windowed:, s] = 0
            out[first_windowed:, s, :, top:bottom, left:right] = sampled[:, k]
    return out, AdaptiveWork(count, windows, (height, width), screen_steps, windowed, passes)
