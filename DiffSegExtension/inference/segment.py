"""Segment one case: prepare slices → sample the ensemble → aggregate → back to the input grid."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from DiffSegExtension import session
from DiffSegExtension.allocator import release_freed_memory
from DiffSegExtension.components import masks_from_probability
from DiffSegExtension.data.loading import Case
from DiffSegExtension.data.preparation import PreparedVolume
from DiffSegExtension.diffusion.samplers import make_sampler
from DiffSegExtension.diffusion.schedule import NoiseSchedule
from DiffSegExtension.ensemble import aggregate
from DiffSegExtension.errors import DiffSegInputError
from DiffSegExtension.inference.adaptive import AdaptiveSettings, AdaptiveWork, sample_adaptive
from DiffSegExtension.inference.ensemble_sampling import passes_needed, sample_ensemble
from DiffSegExtension.inference.progress import Progress
from DiffSegExtension.model_card import LoadedModel
from DiffSegExtension.network import condition_input
from DiffSegExtension.regions import REGION_TITLES, label_map_from_regions, nest_in_place


ENSEMBLES = ("adaptive", "full")
#: The per-region maps of a result, as :func:`maps_from_members` makes them and outputs write them.
MAP_KINDS = ("probability", "uncertainty", "entropy")


@dataclass
class SegmentOptions:
    """How to sample. ``slice_range`` is a half-open [a, b) range of the input's own voxel indices
    along its superior–inferior axis; ``batch_size`` counts (slice, member) items per network pass.
    ``ensemble``: ``full`` samples every member on every slice, ``adaptive`` only near the tumour that
    member 0 finds (:mod:`~DiffSegExtension.inference.adaptive`), or a separate screen of ``screen_steps``
    sampler steps finds. ``min_component_probability``: whole-tumour mask components whose mean probability is
    below it are removed from the masks (:mod:`~DiffSegExtension.components`; 0 keeps all)."""

    members: int = 5
    sampler: str = "dpmpp"
    steps: int = 10
    seed: int = 0
    device: str = "auto"
    slice_range: tuple[int, int] | None = None
    batch_size: int | None = None
    sampler_options: dict = field(default_factory=dict)
    ensemble: str = "full"
    screen_steps: int | None = None
    min_component_probability: float = 0.0

    def check(self, num_timesteps: int) -> None:
        if self.members < 1:
            raise DiffSegInputError(f"--members must be at least 1, got {self.members}")
        make_sampler(self.sampler, NoiseSchedule.from_config(_unit_diffusion(num_timesteps)), self.steps)
        if self.screen_steps is not None and self.screen_steps < 1:
            raise DiffSegInputError(f"--screen-steps must be at least 1, got {self.screen_steps}")
        if self.ensemble not in ENSEMBLES:
            raise DiffSegInputError(f"--ensemble must be one of {', '.join(ENSEMBLES)}, got '{self.ensemble}'")
        if not 0.0 <= self.min_component_probability <= 1.0:
            raise DiffSegInputError("--min-component-probability must be in [0, 1] (0 keeps every component), got "
                                    f"{self.min_component_probability}")
        if self.slice_range is not None and self.slice_range[0] >= self.slice_range[1]:
            raise DiffSegInputError(f"--slices {self.slice_range[0]}:{self.slice_range[1]} is empty: give a:b with a < b")


def _unit_diffusion(timesteps: int):
    from DiffSegExtension.config import DiffusionConfig

    return DiffusionConfig(timesteps=timesteps)


@dataclass
class Segmentation:
    """Results on the input's voxel grid (same shape and axis order as ``case.reference``), per region.

    ``regions``: the model's region codes (WT first). Per region r (leading axis R): probability
    float32 [0, 1] (fraction of members); mask uint8 {0, 1} (probability ≥ 0.5); uncertainty float32
    [0, 0.25] (member variance); entropy float32 [0, 1] bits. Members are nested (WT ⊇ TC ⊇ ET) before
    aggregation, so probabilities and masks are nested too; whole-tumour components below
    ``options.min_component_probability`` are then removed from every mask (the maps keep them). ``label_map``
    uint8: BraTS labels (4 ET, 1 TC − ET, 2 WT − TC) for a region model, {0, 1} for a whole-tumour model. ``members``
    (N, S, R, H, W) uint8 and ``prepared`` keep the sampled slices in the network's layout.
    """

    regions: tuple[str, ...]
    probability: np.ndarray
    mask: np.ndarray
    uncertainty: np.ndarray
    entropy: np.ndarray
    label_map: np.ndarray
    members: torch.Tensor
    prepared: PreparedVolume
    seconds: float
    passes: int
    options: SegmentOptions
    passes_per_slice: float
    adaptive: AdaptiveWork | None = None

    def summary(self, voxel_ml: float) -> dict:
        """Run facts and each region's volume in ml (``voxel_ml``: one voxel's volume in ml)."""
        source = self.prepared.source_slices
        return {
            "options": {k: v for k, v in asdict(self.options).items() if k != "slice_range"},
            "slice_axis": int(self.prepared.frame.slice_axis),
            "slice_range": [int(min(source)), int(max(source)) + 1],
            "slices_sampled": len(source),
            "network_passes": self.passes,
            "passes_per_slice": round(self.passes_per_slice, 2),
            **({"adaptive": {"candidate_slices": self.adaptive.candidates,
                             "window_fraction": round(self.adaptive.window_fraction(), 3)}} if self.adaptive else {}),
            "seconds": round(self.seconds, 3),
            "modalities_used": [m for m, here in zip(self.prepared.modalities, self.prepared.present) if here],
            "regions": {r: {"title": REGION_TITLES[r], "voxels": int(self.mask[i].sum()),
                            "volume_ml": round(float(self.mask[i].sum() * voxel_ml), 3)}
                        for i, r in enumerate(self.regions)},
        }


def resolve_device(name: str) -> torch.device:
    """``auto``/``cpu``/``cuda``/``cuda:N``; a bare CUDA choice under torchrun means this process's GPU (LOCAL_RANK)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name in ("gpu", "cuda") or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DiffSegInputError("--device cuda was asked for but no CUDA GPU is available: use --device cpu or auto")
        if name in ("gpu", "cuda"):
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise DiffSegInputError(f"unknown device '{name}': use auto, cpu or cuda")


def inference_network(model: LoadedModel, device: torch.device, sampler: str) -> torch.nn.Module:
    """The network ``sampler`` runs (:meth:`LoadedModel.network_for`) on ``device`` in channels-last memory format
    (in place): convolutions on this layout ran faster on the CPUs measured (``benchmarks/bench_speed.py``)."""
    return model.network_for(sampler).to(device, memory_format=torch.channels_last)


def default_batch_size(device: torch.device, height: int, width: int) -> int:
    """(slice, member) items per pass: ~32 brain crops of 160×192 on a CPU, 4× that on a GPU."""
    per_item = height * width / (160 * 192)
    budget = 128 if device.type == "cuda" else 32
    return max(1, min(256, int(budget / per_item)))


def min_window(model: LoadedModel, height: int, width: int) -> int:
    """The smallest window (pixels a side) the network samples in: its training crop (it learnt on inputs of
    that size), or the whole (H, W) slice when the card does not say."""
    training = model.card.get("training", {})
    crop = training.get("options", {}).get("crop") or training.get("distillation", {}).get("crop")  # a distil run's
    return crop or max(height, width)


def segment_case(model: LoadedModel, case: Case, options: SegmentOptions, progress: Progress | None = None) -> Segmentation:
    """Segment ``case`` (already loaded with the model's modalities) with an implicit ensemble."""
    progress = progress or Progress("none")
    options.check(model.config.diffusion.timesteps)
    started = time.perf_counter()
    net = model.config.network
    prepared = session.prepared_volume(case, model.modalities, model.config.preprocess, net.size_multiple,
                                       slice_range=options.slice_range, regions=net.regions,
                                       optional=net.optional_modalities)
    device = resolve_device(options.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    network = inference_network(model, device, options.sampler)
    count, _, height, width = prepared.images.shape
    batch = options.batch_size or default_batch_size(device, height, width)
    passes = passes_needed(count, options.members, options.steps, batch)  # an adaptive run corrects it once planned
    progress.start(passes, f"{case.name}: {count} slices × {options.members} members ({options.ensemble}), "
                           f"{options.sampler} {options.steps} steps")
    present = torch.tensor(prepared.present).expand(count, -1)
    common = dict(members=options.members, sampler=options.sampler, steps=options.steps, seed=options.seed,
                  batch_size=batch, device=device, on_step=progress.advance,
                  sampler_options=model.sampler_options(options.sampler, options.sampler_options),
                  regions=len(net.regions))
    schedule = NoiseSchedule.from_config(model.config.diffusion)
    condition = condition_input(net, prepared.images, present)
    work = None
    if options.ensemble == "adaptive":
        members, work = sample_adaptive(network, schedule, condition, prepared.brain, prepared.source_slices,
                                        size_multiple=net.size_multiple, on_plan=progress.retotal,
                                        settings=AdaptiveSettings(min_window=min_window(model, height, width),
                                                                  screen_steps=options.screen_steps), **common)
        passes = work.passes
    else:
        members = sample_ensemble(network, schedule, condition, prepared.source_slices, **common)
    progress.close()
    release_freed_memory()  # the passes' kept activations; the maps built next would otherwise add to them
    seg = segmentation_from_members(prepared, members, options, passes, net.regions)
    if work is not None:
        seg.passes_per_slice, seg.adaptive = work.full_slice_passes(options.steps) / count, work
    seg.seconds = time.perf_counter() - started
    return seg


def slice_maps(prepared: PreparedVolume, members: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Members (N, S, R, H, W) {0, 1} → (the members nested and limited to the brain, {probability, uncertainty,
    entropy: (S, R, H, W) float32} aggregated per region on the prepared slices)."""
    members = members & prepared.brain[:, None].to(torch.uint8)  # a tumour lies inside the brain (a new tensor)
    nest_in_place(members.numpy().swapaxes(0, 2))  # (R, S, N, H, W): a view, so members are nested
    result = aggregate(members)
    return members, {kind: getattr(result, kind) for kind in MAP_KINDS}


def maps_from_members(prepared: PreparedVolume, members: torch.Tensor) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """:func:`slice_maps` with the maps restored to the input grid: (R, *input shape) float32 each."""
    members, maps = slice_maps(prepared, members)
    return members, {kind: prepared.restore(m) for kind, m in maps.items()}


def segmentation_from_members(prepared: PreparedVolume, members: torch.Tensor, options: SegmentOptions,
                              passes: int, regions: tuple[str, ...] = ("wt",)) -> Segmentation:
    """Members (N, S, R, H, W) {0, 1} → :func:`maps_from_members`, then the masks (with the component rule) and the
    label map (``seconds`` left 0)."""
    members, maps = maps_from_members(prepared, members)
    mask = masks_from_probability(maps["probability"], options.min_component_probability)
    return Segmentation(
        regions=tuple(regions),
        mask=mask,
        label_map=label_map_from_regions(mask, regions),
        members=members,
        prepared=prepared,
        seconds=0.0,
        passes=passes,
        options=options,
        passes_per_slice=float(options.members * options.steps),
        **maps,
    )
