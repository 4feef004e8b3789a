"""Measurements for the evaluation report. Every number the report prints is computed here, in this run,
and scored by the engine's ``case_metrics`` (one row per region the case's label annotates).

* :func:`run_full_volume` — one N-member run per case (N = the largest ensemble size), sampled in
  member chunks (``sample_ensemble(first_member=…)``) so the time of every size is measured, then
  scored for each size k from its first k members. Members are keyed by (seed, slice, member), so the
  first k members of one run ARE a k-member run.
* :func:`subset_rows` — any method (diffusion ensemble, baseline, FLAIR-only model) on a fixed subset of
  a case's slices with only some of its sequences; the label is cut to the slices sampled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np
import torch

from benchmarks.evaluation.cases import restrict_label, slice_subset, with_modalities
from DiffSegExtension.data.loading import Case
from DiffSegExtension.data.preparation import PreparedVolume, prepare_volume
from DiffSegExtension.diffusion.schedule import NoiseSchedule
from DiffSegExtension.ensemble import aggregate
from DiffSegExtension.evaluation.evaluate import case_metrics
from DiffSegExtension.inference.ensemble_sampling import passes_needed, sample_ensemble
from DiffSegExtension.inference.segment import (Segmentation, SegmentOptions, default_batch_size, resolve_device,
                                                segmentation_from_members)
from DiffSegExtension.model_card import LoadedModel
from DiffSegExtension.network import condition_input
from DiffSegExtension.regions import label_map_from_regions


@dataclass(frozen=True)
class Settings:
    """What the report measures. ``sampler``/``steps``/``members`` = the default (from the model card)."""

    sampler: str = "dpmpp"
    steps: int = 10
    members: int = 5
    sizes: tuple[int, ...] = (1, 3, 5, 10)
    subset_stride: int = 4
    seed: int = 0
    batch_size: int | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.members not in self.sizes:
            raise ValueError(f"the default ensemble size {self.members} must be one of the sizes {self.sizes}")
        if min(self.sizes) < 1 or self.subset_stride < 1:
            raise ValueError("ensemble sizes and the subset stride must be >= 1")

    @property
    def full_members(self) -> int:
        return max(self.sizes)

    def options(self, members: int, batch_size: int | None = None) -> SegmentOptions:
        return SegmentOptions(members=members, sampler=self.sampler, steps=self.steps, seed=self.seed,
                              device=self.device, batch_size=batch_size or self.batch_size)

    @staticmethod
    def quick(**overrides) -> "Settings":
        """Tiny settings for the smoke test: every section runs, no number means anything."""
        return Settings(**{**dict(steps=2, members=2, sizes=(1, 2, 3)), **overrides})


def prepare_for(model: LoadedModel, case: Case) -> PreparedVolume:
    """``case``'s brain slices as ``model`` reads them (its modalities, regions, optional inputs)."""
    net = model.config.network
    return prepare_volume(case, model.modalities, model.config.preprocess, net.size_multiple, regions=net.regions,
                          optional=net.optional_modalities)


def sample_members(model: LoadedModel, prepared: PreparedVolume, settings: Settings, members: int,
                   first_member: int = 0) -> torch.Tensor:
    """Members ``first_member`` … of every prepared slice: (members, S, R, H, W) uint8 (the engine's sampler)."""
    net = model.config.network
    device = resolve_device(settings.device)
    count, _, height, width = prepared.images.shape
    present = torch.tensor(prepared.present).expand(count, -1)
    return sample_ensemble(model.network_for(settings.sampler).to(device), NoiseSchedule.from_config(model.config.diffusion),
                           condition_input(net, prepared.images, present), prepared.source_slices, members=members,
                           first_member=first_member, sampler=settings.sampler, steps=settings.steps, seed=settings.seed,
                           batch_size=settings.batch_size or default_batch_size(device, height, width), device=device,
                           regions=len(net.regions), sampler_options=model.sampler_options(settings.sampler))


def diffusion_segment(model: LoadedModel, settings: Settings) -> Callable[[PreparedVolume], Segmentation]:
    """The default ensemble of ``model`` as a prepared-slices → :class:`Segmentation` function."""
    def segment(prepared: PreparedVolume) -> Segmentation:
        _, _, height, width = prepared.images.shape
        batch = settings.batch_size or default_batch_size(resolve_device(settings.device), height, width)
        members = sample_members(model, prepared, settings, settings.members)
        return segmentation_from_members(prepared, members, settings.options(settings.members, batch),
                                         passes_needed(len(prepared), settings.members, settings.steps, batch),
                                         model.regions)
    return segment


@dataclass
class VolumeRun:
    """One case's full-volume run: rows per ensemble size (region rows), its slices and the figure slice."""

    case: str
    rows: dict[int, list[dict]]
    source_slices: list[int]
    slice_axis: int
    figure: dict


def figure_slice(seg: Segmentation, case: str) -> dict:
    """The slice with the most wrong region voxels of a diffusion segmentation, in the network's layout.

    Returns ``case``, ``slice`` (source index), ``image`` (M, H, W) inputs, ``modalities``, ``regions``,
    ``truth`` / ``mask`` (R, H, W) {0, 1}, ``truth_labels`` / ``labels`` (H, W) BraTS label maps,
    ``qubrats`` (R, H, W) the QU-BraTS uncertainty (100 × entropy), ``wrong`` (voxels).
    """
    p = seg.prepared
    result = aggregate(seg.members)
    truth = p.region_label.bool()
    wrong = (result.mask.bool() != truth).flatten(1).sum(dim=1)
    s = int(torch.argmax(wrong))
    mask, true = result.mask[s].numpy(), truth[s].numpy().astype(np.uint8)
    return {"case": case, "slice": p.source_slices[s], "image": p.images[s].numpy(), "modalities": p.modalities,
            "regions": seg.regions, "truth": true, "mask": mask, "truth_labels": label_map_from_regions(true, seg.regions),
            "labels": label_map_from_regions(mask, seg.regions), "qubrats": 100.0 * result.entropy[s].numpy(),
            "wrong": int(wrong[s])}


def run_full_volume(model: LoadedModel, case: Case, settings: Settings, log=print) -> VolumeRun:
    """Sample ``settings.full_members`` members on every brain slice of ``case``; score sizes ``settings.sizes``.

    Seconds of size k = preparation + sampling of members 0 … k−1 (measured chunk by chunk) +
    aggregation and restoring to the source grid (measured per k): what ``segment_case`` costs for k.
    """
    started = time.perf_counter()
    prepared = prepare_for(model, case)
    prepare_s = time.perf_counter() - started
    count, _, height, width = prepared.images.shape
    batch = settings.batch_size or default_batch_size(resolve_device(settings.device), height, width)
    chunks, sampled, elapsed, cumulative = [], 0, 0.0, {}
    for stop in sorted(set(settings.sizes)):
        tic = time.perf_counter()
        chunks.append(sample_members(model, prepared, settings, stop - sampled, first_member=sampled))
        elapsed += time.perf_counter() - tic
        cumulative[stop], sampled = elapsed, stop
        log(f"  {case.name}: members {stop}/{settings.full_members} sampled ({elapsed:.1f} s, {count} slices)")
    members = torch.cat(chunks)
    rows, figure = {}, {}
    for k in sorted(set(settings.sizes)):
        tic = time.perf_counter()
        seg = segmentation_from_members(prepared, members[:k], settings.options(k, batch),
                                        passes_needed(count, k, settings.steps, batch), model.regions)
        seg.seconds = prepare_s + cumulative[k] + time.perf_counter() - tic
        rows[k] = [{**row, "members": k} for row in case_metrics(seg, case)]
        if k == settings.members:
            figure = figure_slice(seg, case.name)
    return VolumeRun(case=case.name, rows=rows, source_slices=list(prepared.source_slices),
                     slice_axis=prepared.frame.slice_axis, figure=figure)


def subset_rows(segment: Callable[[PreparedVolume], Segmentation], prepare: Callable[[Case], PreparedVolume],
                case: Case, modalities: Sequence[str], source_slices: Sequence[int]) -> list[dict]:
    """Region rows of one method on ``case`` with only ``modalities``, on the brain slices in ``source_slices``.

    ``prepare`` / ``segment``: the method's preparation and prepared → :class:`Segmentation`. The label is
    cut to the slices actually sampled, so Dice, AUROC and QU-BraTS are those of these slices
    (HD95 too, but between sparse slices: not comparable with full volumes). Rows carry ``modalities``
    (what the network was given, from the preparation) and ``seconds`` (preparation + segmentation).
    """
    started = time.perf_counter()
    prepared = prepare(with_modalities(case, modalities))
    wanted = set(source_slices)
    prepared = slice_subset(prepared, [i for i, s in enumerate(prepared.source_slices) if s in wanted])
    seg = segment(prepared)
    seg.seconds = time.perf_counter() - started
    used = [m for m, here in zip(prepared.modalities, prepared.present) if here]
    truth = restrict_label(case, prepared.frame.slice_axis, prepared.source_slices)
    return [{**row, "modalities": used} for row in case_metrics(seg, truth)]


def stride_sources(run: VolumeRun, stride: int) -> list[int]:
    """Source indices of every ``stride``-th brain slice of a full-volume run (starting at stride // 2)."""
    count = len(run.source_slices)
    return [run.source_slices[i] for i in range(min(stride // 2, count - 1), count, stride)]


def with_defaults_from(model: LoadedModel, settings: Settings) -> Settings:
    """``settings`` with the model card's default sampler/steps/members (added to the sizes)."""
    d = model.inference_defaults
    sizes = tuple(sorted(set(settings.sizes) | {int(d["members"])}))
    return replace(settings, sampler=d["sampler"], steps=int(d["steps"]), members=int(d["members"]), sizes=sizes)
