"""Segment one case: prepare slices → sample the ensemble → aggregate → back to the input grid."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from DiffSegExtension.data.loading import Case
from DiffSegExtension.data.preparation import PreparedVolume, prepare_volume
from DiffSegExtension.diffusion.samplers import make_sampler
from DiffSegExtension.diffusion.schedule import NoiseSchedule
from DiffSegExtension.ensemble import aggregate
from DiffSegExtension.errors import DiffSegInputError
from DiffSegExtension.inference.ensemble_sampling import passes_needed, sample_ensemble
from DiffSegExtension.inference.progress import Progress
from DiffSegExtension.model_card import LoadedModel


@dataclass
class SegmentOptions:
    """How to sample. ``slice_range`` is a half-open [a, b) range of the input's own voxel indices
    along its superior–inferior axis; ``batch_size`` counts (slice, member) items per network pass."""

    members: int = 5
    sampler: str = "dpmpp"
    steps: int = 10
    seed: int = 0
    device: str = "auto"
    slice_range: tuple[int, int] | None = None
    batch_size: int | None = None
    sampler_options: dict = field(default_factory=dict)

    def check(self, num_timesteps: int) -> None:
        if self.members < 1:
            raise DiffSegInputError(f"--members must be at least 1, got {self.members}")
        make_sampler(self.sampler, NoiseSchedule.from_config(_unit_diffusion(num_timesteps)), self.steps)
        if self.slice_range is not None and self.slice_range[0] >= self.slice_range[1]:
            raise DiffSegInputError(f"--slices {self.slice_range[0]}:{self.slice_range[1]} is empty: give a:b with a < b")


def _unit_diffusion(timesteps: int):
    from DiffSegExtension.config import DiffusionConfig

    return DiffusionConfig(timesteps=timesteps)


@dataclass
class Segmentation:
    """Results on the input's voxel grid (same shape and axis order as ``case.reference``).

    probability float32 [0, 1]; mask uint8 {0, 1} (probability ≥ 0.5); uncertainty float32
    [0, 0.25] (member variance); entropy float32 [0, 1] bits. ``members`` (N, S, H, W) uint8 and
    ``prepared`` keep the sampled slices in the network's layout (for figures and evaluation).
    """

    probability: np.ndarray
    mask: np.ndarray
    uncertainty: np.ndarray
    entropy: np.ndarray
    members: torch.Tensor
    prepared: PreparedVolume
    seconds: float
    passes: int
    options: SegmentOptions

    def summary(self) -> dict:
        source = self.prepared.source_slices
        return {
            "options": {k: v for k, v in asdict(self.options).items() if k != "slice_range"},
            "slice_axis": int(self.prepared.frame.slice_axis),
            "slice_range": [int(min(source)), int(max(source)) + 1],
            "slices_sampled": len(source),
            "network_passes": self.passes,
            "passes_per_slice": self.options.members * self.options.steps,
            "seconds": round(self.seconds, 3),
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


def default_batch_size(device: torch.device, height: int, width: int) -> int:
    """(slice, member) items per pass: ~32 brain crops of 160×192 on a CPU, 4× that on a GPU."""
    per_item = height * width / (160 * 192)
    budget = 128 if device.type == "cuda" else 32
    return max(1, min(256, int(budget / per_item)))


def segment_case(model: LoadedModel, case: Case, options: SegmentOptions, progress: Progress | None = None) -> Segmentation:
    """Segment ``case`` (already loaded with the model's modalities) with an implicit ensemble."""
    progress = progress or Progress("none")
    options.check(model.config.diffusion.timesteps)
    started = time.perf_counter()
    prepared = prepare_volume(case, model.modalities, model.config.preprocess, model.config.network.size_multiple,
                              slice_range=options.slice_range)
    device = resolve_device(options.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    network = model.network.to(device)
    count, _, height, width = prepared.images.shape
    batch = options.batch_size or default_batch_size(device, height, width)
    passes = passes_needed(count, options.members, options.steps, batch)
    progress.start(passes, f"{case.name}: {count} slices × {options.members} members, {options.sampler} {options.steps} steps")
    members = sample_ensemble(
        network, NoiseSchedule.from_config(model.config.diffusion), prepared.images, prepared.source_slices,
        members=options.members, sampler=options.sampler, steps=options.steps, seed=options.seed,
        batch_size=batch, device=device, on_step=progress.advance, sampler_options=options.sampler_options,
    )
    progress.close()
    members &= prepared.brain.to(torch.uint8)  # a tumour lies inside the brain
    seg = segmentation_from_members(prepared, members, options, passes)
    seg.seconds = time.perf_counter() - started
    return seg


def segmentation_from_members(prepared: PreparedVolume, members: torch.Tensor, options: SegmentOptions,
                              passes: int) -> Segmentation:
    """Aggregate members (N, S, H, W) {0, 1} and restore the maps to the input grid (``seconds`` left 0)."""
    result = aggregate(members)
    probability = prepared.restore(result.probability).astype(np.float32)
    return Segmentation(
        probability=probability,
        mask=(probability >= 0.5).astype(np.uint8),
        uncertainty=prepared.restore(result.uncertainty).astype(np.float32),
        entropy=prepared.restore(result.entropy).astype(np.float32),
        members=members,
        prepared=prepared,
        seconds=0.0,
        passes=passes,
        options=options,
    )
