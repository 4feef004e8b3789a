"""Measurements for the evaluation report. Every number the report prints is computed here, in this run.

* :func:`run_full_volume` — one N-member run per case (N = the largest ensemble size), sampled in
  member chunks [0, 1), [1, 2), [2, 3), [3, 5), [5, 10) (``sample_ensemble(first_member=…)``) so that
  the time of every ensemble size is measured, then scored for each size k from its first k members.
  Members are keyed by (seed, slice, member), so the first k members of one run ARE a k-member run.
* :func:`quality_speed_grid` — sampler × steps on a fixed subset of brain slices per case.
* :func:`reference_comparison` — the seed's recipe (DDPM 1000 × 5) vs the default sampler on the
  slices with the most tumour.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from DiffSegExtension.data.loading import Case
from DiffSegExtension.data.preparation import PreparedVolume, prepare_volume
from DiffSegExtension.diffusion.schedule import NoiseSchedule
from DiffSegExtension.ensemble import aggregate
from DiffSegExtension.evaluation.evaluate import case_metrics
from DiffSegExtension.evaluation.metrics import dice, reliability
from DiffSegExtension.inference.ensemble_sampling import passes_needed, sample_ensemble
from DiffSegExtension.inference.segment import (SegmentOptions, default_batch_size, resolve_device,
                                                segmentation_from_members)
from DiffSegExtension.model_card import LoadedModel

RELIABILITY_BINS = 10


@dataclass(frozen=True)
class Settings:
    """What the report measures. ``sampler``/``steps``/``members`` = the default (from the model card)."""

    sampler: str = "dpmpp"
    steps: int = 10
    members: int = 5
    sizes: tuple[int, ...] = (1, 2, 3, 5, 10)
    grid_samplers: tuple[str, ...] = ("ddpm", "ddim", "dpmpp")
    grid_steps: tuple[int, ...] = (5, 10, 20, 50)
    grid_members: int = 5
    stride: int = 8
    reference_sampler: str = "ddpm"
    reference_steps: int = 1000
    reference_slices: int = 2
    seed: int = 0
    batch_size: int | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.members not in self.sizes:
            raise ValueError(f"the default ensemble size {self.members} must be one of the sizes {self.sizes}")
        if min(self.sizes) < 1 or self.stride < 1 or self.reference_slices < 1:
            raise ValueError("ensemble sizes, stride and reference slices must be >= 1")

    @property
    def full_members(self) -> int:
        return max(self.sizes)

    @staticmethod
    def quick(**overrides) -> "Settings":
        """Tiny settings for the smoke test: every section runs, no number means anything."""
        base = dict(steps=2, members=2, sizes=(1, 2, 3), grid_steps=(1, 2), grid_members=2, stride=4,
                    reference_steps=4, reference_slices=1)
        return Settings(**{**base, **overrides})


@dataclass
class VolumeRun:
    """One case's full-volume run: members (N, S, H, W) uint8 (inside the brain), scores per ensemble size."""

    case: str
    prepared: PreparedVolume
    members: torch.Tensor
    rows: dict[int, dict]
    #: Reliability of the default ensemble inside the brain: per-bin count, Σ confidence, Σ observed tumour.
    reliability: dict[str, np.ndarray]
    brain_voxels: int
    batch_size: int


def run_full_volume(model: LoadedModel, case: Case, settings: Settings, log=print) -> VolumeRun:
    """Sample ``settings.full_members`` members on every brain slice of ``case``; score sizes ``settings.sizes``.

    Seconds of size k = preparation + sampling of members 0 … k−1 (measured chunk by chunk) +
    aggregation and restoring to the source grid (measured per k): what ``segment_case`` costs for k.
    """
    started = time.perf_counter()
    prepared = prepare_volume(case, model.modalities, model.config.preprocess, model.config.network.size_multiple)
    prepare_s = time.perf_counter() - started
    device = resolve_device(settings.device)
    network = model.network.to(device)
    schedule = NoiseSchedule.from_config(model.config.diffusion)
    count, _, height, width = prepared.images.shape
    batch = settings.batch_size or default_batch_size(device, height, width)
    chunks, sampled, elapsed, cumulative = [], 0, 0.0, {}
    for stop in sorted(set(settings.sizes)):
        tic = time.perf_counter()
        chunks.append(sample_ensemble(network, schedule, prepared.images, prepared.source_slices,
                                      members=stop - sampled, first_member=sampled, sampler=settings.sampler,
                                      steps=settings.steps, seed=settings.seed, batch_size=batch, device=device))
        elapsed += time.perf_counter() - tic
        cumulative[stop], sampled = elapsed, stop
        log(f"  {case.name}: members {stop}/{settings.full_members} sampled ({elapsed:.1f} s, {count} slices)")
    members = torch.cat(chunks) & prepared.brain.to(torch.uint8)
    rows, table = {}, None
    brain = prepared.restore(prepared.brain.float()) > 0.5
    truth = case.label.astype(bool)
    for k in sorted(set(settings.sizes)):
        options = SegmentOptions(members=k, sampler=settings.sampler, steps=settings.steps, seed=settings.seed,
                                 device=settings.device, batch_size=batch)
        tic = time.perf_counter()
        seg = segmentation_from_members(prepared, members[:k], options, passes_needed(count, k, settings.steps, batch))
        seg.seconds = prepare_s + cumulative[k] + time.perf_counter() - tic
        rows[k] = {**case_metrics(seg, case), "members": k, "sampler": settings.sampler, "steps": settings.steps}
        if k == settings.members:
            r = reliability(seg.probability[brain], truth[brain], bins=RELIABILITY_BINS)
            table = {"count": r["count"], "confidence_sum": np.nan_to_num(r["confidence"] * r["count"]),
                     "frequency_sum": np.nan_to_num(r["frequency"] * r["count"])}
    return VolumeRun(case=case.name, prepared=prepared, members=members, rows=rows, reliability=table,
                     brain_voxels=int(brain.sum()), batch_size=batch)


def pooled_reliability(runs: list[VolumeRun]) -> dict[str, np.ndarray | float]:
    """Reliability diagram pooled over cases (voxels inside the brain) and its ECE."""
    count = sum(r.reliability["count"] for r in runs)
    conf = sum(r.reliability["confidence_sum"] for r in runs)
    freq = sum(r.reliability["frequency_sum"] for r in runs)
    used = count > 0
    confidence = np.where(used, conf / np.maximum(count, 1), np.nan)
    frequency = np.where(used, freq / np.maximum(count, 1), np.nan)
    ece = float(np.sum(count[used] / count.sum() * np.abs(frequency[used] - confidence[used]))) if count.sum() else math.nan
    return {"count": count, "confidence": confidence, "frequency": frequency, "ece": ece}


@dataclass
class SliceSet:
    """A fixed subset of one case's prepared slices. ``index`` = positions in the prepared volume."""

    case: str
    index: list[int]
    images: torch.Tensor
    label: torch.Tensor
    brain: torch.Tensor
    slice_ids: list[int]
    full_volume_members: torch.Tensor = field(repr=False)  # (N, s, H, W) of the full-volume run on these slices


def _slice_set(run: VolumeRun, index: list[int]) -> SliceSet:
    p = run.prepared
    return SliceSet(run.case, index, p.images[index], p.label[index], p.brain[index],
                    [p.source_slices[i] for i in index], run.members[:, index])


def stride_slices(run: VolumeRun, stride: int) -> SliceSet:
    """Every ``stride``-th brain slice (starting at stride // 2): tumour slices appear in their natural share."""
    count = len(run.prepared)
    index = list(range(min(stride // 2, count - 1), count, stride))
    return _slice_set(run, index)


def top_tumour_slices(run: VolumeRun, n: int) -> SliceSet:
    """The ``n`` slices with the largest true tumour area (ties: lower index), in slice order."""
    area = run.prepared.label.flatten(1).sum(dim=1).numpy()
    order = sorted(range(len(area)), key=lambda i: (-area[i], i))[:n]
    return _slice_set(run, sorted(order))


def sample_slices(model: LoadedModel, slices: SliceSet, sampler: str, steps: int, members: int,
                  settings: Settings) -> tuple[torch.Tensor, float]:
    """Members (N, s, H, W) on a slice set with the engine's ``sample_ensemble``, and the seconds it took."""
    device = resolve_device(settings.device)
    _, _, height, width = slices.images.shape
    batch = settings.batch_size or default_batch_size(device, height, width)
    tic = time.perf_counter()
    out = sample_ensemble(model.network.to(device), NoiseSchedule.from_config(model.config.diffusion), slices.images,
                          slices.slice_ids, members=members, sampler=sampler, steps=steps, seed=settings.seed,
                          batch_size=batch, device=device)
    return out & slices.brain.to(torch.uint8), time.perf_counter() - tic


def _mask(members: torch.Tensor) -> np.ndarray:
    return aggregate(members).mask.numpy()


def quality_speed_grid(model: LoadedModel, sets: list[SliceSet], settings: Settings, log=print) -> list[dict]:
    """One row per (sampler, steps): mean over cases of the Dice on each case's slice subset, seconds per slice.

    ``matches_full_volume``: the default cell reproduces the full-volume run's first members bit for bit.
    """
    rows = []
    total = sum(len(s.index) for s in sets)
    for sampler in settings.grid_samplers:
        for steps in settings.grid_steps:
            per_case, seconds, same = {}, 0.0, []
            for s in sets:
                members, took = sample_slices(model, s, sampler, steps, settings.grid_members, settings)
                per_case[s.case] = dice(_mask(members), s.label.numpy())
                seconds += took
                if (sampler, steps, settings.grid_members) == (settings.sampler, settings.steps, settings.members):
                    same.append(bool(torch.equal(members, s.full_volume_members[:settings.members])))
            rows.append({"sampler": sampler, "steps": steps, "members": settings.grid_members,
                         "passes_per_slice": steps * settings.grid_members, "dice": float(np.mean(list(per_case.values()))),
                         "dice_per_case": per_case, "seconds_per_slice": seconds / total, "slices": total,
                         "matches_full_volume": all(same) if same else None})
            log(f"  grid {sampler} {steps:>4} steps × {settings.grid_members}: Dice {rows[-1]['dice']:.3f}, "
                f"{rows[-1]['seconds_per_slice']:.2f} s/slice")
    return rows


def reference_comparison(model: LoadedModel, sets: list[SliceSet], settings: Settings, log=print) -> list[dict]:
    """Per case: the seed's recipe (reference sampler/steps × default members) vs the default on the same slices."""
    rows = []
    for s in sets:
        ref, ref_s = sample_slices(model, s, settings.reference_sampler, settings.reference_steps, settings.members, settings)
        ours, ours_s = sample_slices(model, s, settings.sampler, settings.steps, settings.members, settings)
        truth = s.label.numpy()
        rows.append({"case": s.case, "slices": s.slice_ids, "reference_dice": dice(_mask(ref), truth),
                     "default_dice": dice(_mask(ours), truth), "agreement_dice": dice(_mask(ref), _mask(ours)),
                     "reference_seconds_per_slice": ref_s / len(s.index), "default_seconds_per_slice": ours_s / len(s.index),
                     "reference_passes_per_slice": settings.reference_steps * settings.members,
                     "default_passes_per_slice": settings.steps * settings.members})
        log(f"  reference {s.case}: {settings.reference_sampler} {settings.reference_steps} Dice "
            f"{rows[-1]['reference_dice']:.3f} vs default {rows[-1]['default_dice']:.3f}")
    return rows


def with_defaults_from(model: LoadedModel, settings: Settings) -> Settings:
    """``settings`` with the model card's default sampler/steps/members (the full settings only)."""
    d = model.inference_defaults
    sizes = tuple(sorted(set(settings.sizes) | {int(d["members"])}))
    return replace(settings, sampler=d["sampler"], steps=int(d["steps"]), members=int(d["members"]), sizes=sizes)
