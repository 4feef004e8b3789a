"""Refine a previous result with guidance: re-sample the slices it touches, merge, pin the known voxels.

Known voxels enter every sampler step inpainting-style (see
:func:`~DiffSegExtension.diffusion.sampling.sample_masks`), so any model works unchanged; a model trained with
hint planes (``NetworkConfig.guidance``) also reads them as a condition of every step, so the rest of the mask
can follow them. (A one-pass student's single pass, at t = 999, sees the noised known voxels as almost pure
noise: there the guidance is pinned, and the points' evidence moves the rest.) Only the source slices (along
the superior–inferior axis) that the new guidance touches (a point: those where its ball's cross-section holds
at least ``MIN_SECTION`` of its largest; the thin caps beyond are pinned, not re-sampled), ± ``margin``
slices, are re-sampled, with all accumulated guidance, and on them only a window around the previous result's
tumour and the guidance (as the adaptive ensemble's windows: + 16 px, never smaller than the training crop);
every other slice keeps the previous maps. Each point's evidence then reaches beyond its slices, into tissue
that looks like its own (:mod:`~DiffSegExtension.refinement.click_evidence`): the new points' on every slice,
the earlier points' again on the re-sampled slices, whose maps are fresh. On the input grid the known voxels
are then pinned (probability 1 or 0, uncertainty and entropy 0) and the masks and label map are rebuilt from
the merged probabilities (whole-tumour components the ensemble does not back removed as by ``segment``, except
those holding a voxel marked as tumour).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from DiffSegExtension import session
from DiffSegExtension.components import masks_from_probability
from DiffSegExtension.data.geometry import CanonicalFrame
from DiffSegExtension.data.loading import Case
from DiffSegExtension.data.preparation import PreparedVolume
from DiffSegExtension.diffusion.schedule import NoiseSchedule
from DiffSegExtension.errors import DiffSegInputError
from DiffSegExtension.inference.adaptive import AdaptiveSettings, tumour_window
from DiffSegExtension.inference.ensemble_sampling import passes_needed, sample_ensemble
from DiffSegExtension.inference.progress import Progress
from DiffSegExtension.inference.segment import (Segmentation, SegmentOptions, default_batch_size,
                                                inference_network, min_window, resolve_device, slice_maps)
from DiffSegExtension.model_card import LoadedModel
from DiffSegExtension.network import condition_input
from DiffSegExtension.refinement.click_evidence import TissueLikeness, apply_click_evidence
from DiffSegExtension.refinement.guidance import Guidance, ball_in_box
from DiffSegExtension.refinement.previous import PreviousResult
from DiffSegExtension.regions import label_map_from_regions

#: Slices re-sampled on each side of the slices the guidance touches. The network is 2D, so a slice
#: without known voxels comes out as before when it is sampled the same way (settings and window): a
#: margin mostly costs time (a point reaches other slices through its 3D ball).
DEFAULT_MARGIN = 0
#: A point re-samples the slices where its ball's cross-section holds at least this fraction of the voxels of its
#: largest (a disc of at least half the ball's radius). A 3 mm ball on 1 mm slices: 5 slices, not 7; the two caps
#: beyond hold a voxel each, which is pinned like the rest of the ball.
MIN_SECTION = 0.25


@dataclass
class Refinement:
    """A refined result: ``seg`` on the input grid (its ``prepared`` / ``members`` are the re-sampled slices),
    ``guidance`` the accumulated guidance, ``resampled`` the re-sampled source slice indices (ascending),
    ``window_fraction`` the sampled window's area over the prepared slice's."""

    seg: Segmentation
    guidance: Guidance
    resampled: list[int]
    window_fraction: float

    def summary(self, new: Guidance) -> dict:
        """The ``refine`` entry of summary.json."""
        return {"refine": {"resampled_slices": self.resampled, "slice_axis": int(self.seg.prepared.frame.slice_axis),
                           "window_fraction": round(self.window_fraction, 3),
                           "seconds": round(self.seg.seconds, 3), "new_guidance": new.to_json(),
                           "guidance": self.guidance.to_json()}}


def refine_case(model: LoadedModel, case: Case, previous: PreviousResult, new: Guidance, options: SegmentOptions,
                margin: int = DEFAULT_MARGIN, progress: Progress | None = None) -> Refinement:
    """Apply ``previous.guidance`` + ``new`` to ``previous`` (see the module docstring). ``previous.maps`` become the
    result's maps: they are updated in place (whole volumes; copying them took about a second)."""
    progress = progress or Progress("none")
    started = time.perf_counter()
    if new.is_empty():
        raise DiffSegInputError("refine needs guidance: add --include X,Y,Z, --exclude X,Y,Z or --strokes LABELS.nii.gz")
    if margin < 0:
        raise DiffSegInputError(f"--margin must be >= 0 slices, got {margin}")
    options.check(model.config.diffusion.timesteps)
    net = model.config.network
    regions = tuple(net.regions)
    guidance = previous.guidance.merged(new)
    known = guidance.known(case.affine, case.shape, regions)
    axis = CanonicalFrame(case.affine, case.shape, model.config.preprocess.orientation).slice_axis
    prepared = session.prepared_volume(case, model.modalities, model.config.preprocess, net.size_multiple,
                                       regions=regions, optional=net.optional_modalities,
                                       keep=_touched(new, case, axis, margin))
    device = resolve_device(options.device)
    count, _, height, width = prepared.images.shape
    known_rows = known_slices(prepared, known)
    top, bottom, left, right = _window(prepared, previous, known_rows[1], min_window(model, height, width),
                                       net.size_multiple)
    crop = (..., slice(top, bottom), slice(left, right))
    fraction = (bottom - top) * (right - left) / (height * width)
    batch = options.batch_size or default_batch_size(device, bottom - top, right - left)
    passes = passes_needed(count, options.members, options.steps, batch)
    progress.start(passes, f"{case.name}: refining {count} slices × {options.members} members, "
                           f"{options.sampler} {options.steps} steps")
    present = torch.tensor(prepared.present).expand(count, -1)
    hints = torch.where(known_rows[1], known_rows[0], 0.0) if net.guidance else None
    sampled = sample_ensemble(
        inference_network(model, device, options.sampler), NoiseSchedule.from_config(model.config.diffusion),
        condition_input(net, prepared.images, present, hints)[crop], prepared.source_slices, members=options.members,
        sampler=options.sampler, steps=options.steps, seed=options.seed, batch_size=batch, device=device,
        on_step=progress.advance, sampler_options=model.sampler_options(options.sampler, options.sampler_options),
        regions=len(regions),
        known=tuple(k[crop] for k in known_rows))  # (N, S, R, h, w)
    members = torch.zeros(*sampled.shape[:3], height, width, dtype=torch.uint8)
    members[crop] = sampled
    progress.close()
    maps = previous.maps
    for kind, fresh in slice_maps(prepared, members)[1].items():
        prepared.restore_slab(maps[kind], fresh)  # the re-sampled slices replaced, in place
    likeness = TissueLikeness(case.images)
    apply_click_evidence(maps, previous.guidance.points, case.affine, regions, options.members,
                         within=_slab(case.shape, prepared), likeness=likeness)
    apply_click_evidence(maps, new.points, case.affine, regions, options.members, likeness=likeness)
    pin_known(maps, known)
    mask = masks_from_probability(maps["probability"], options.min_component_probability, keep=known[0] > 0)
    seg = Segmentation(regions=regions, mask=mask, label_map=label_map_from_regions(mask, regions), members=members,
                       prepared=prepared, seconds=time.perf_counter() - started, passes=passes, options=options,
                       passes_per_slice=options.members * options.steps * fraction, **maps)
    return Refinement(seg, guidance, sorted(prepared.source_slices), fraction)


def _window(prepared: PreparedVolume, previous: PreviousResult, known: torch.Tensor, smallest: int,
            multiple: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) pixels of the prepared slices to re-sample: around the previous result's
    tumour (probability > 0, any region) and the known voxels (S, R, H, W) bool on them, as the adaptive
    ensemble's windows (:func:`~DiffSegExtension.inference.adaptive.tumour_window`); the whole slice when
    neither lies on them. Outside it every member is background, as the previous result was there."""
    before = torch.stack([prepared.to_slices(p > 0) for p in previous.maps["probability"]]).amax(dim=0) > 0
    around = before | known.any(dim=1)
    if not around.any():
        return 0, around.shape[1], 0, around.shape[2]
    return tumour_window(around, AdaptiveSettings(min_window=smallest), multiple)


def _touched(new: Guidance, case: Case, axis: int, margin: int) -> list[int]:
    """Source slices (along voxel ``axis``) to re-sample for the ``new`` guidance: each point's slices where its
    ball's cross-section holds at least :data:`MIN_SECTION` of its largest, every slice a stroke paints, and
    ``margin`` slices on each side."""
    others = tuple(a for a in range(3) if a != axis)
    touched = set()
    for point in new.points:
        box, ball = ball_in_box(point, case.affine, case.shape)
        section = ball.sum(axis=others)
        touched |= {box[axis].start + int(i) for i in np.flatnonzero(section >= MIN_SECTION * section.max())}
    for paint in new.strokes.values():
        touched |= {int(i) for i in np.flatnonzero((paint > 0).any(axis=others))}
    if not touched:
        raise DiffSegInputError("the guidance lies outside the image: place points and strokes inside the volume")
    return sorted({s for t in touched for s in range(t - margin, t + margin + 1)})


def known_slices(prepared: PreparedVolume, known: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, *shape) int8 known voxels → (values, mask), each (S, R, H, W), in the prepared slices' layout:
    values ±1.0, mask where at least half of a pixel is known (after in-plane resampling)."""
    inside = torch.stack([prepared.to_slices(k > 0) for k in known], dim=1) >= 0.5
    outside = torch.stack([prepared.to_slices(k < 0) for k in known], dim=1) >= 0.5
    return torch.where(inside, 1.0, -1.0), inside | outside


def pin_known(maps: dict[str, np.ndarray], known: np.ndarray) -> None:
    """Set the known voxels ((R, *shape) int8, :meth:`Guidance.known`) of ``maps`` in place: probability 1 or 0,
    uncertainty and entropy 0."""
    pinned = known != 0
    maps["probability"][pinned] = (known[pinned] > 0).astype(np.float32)
    maps["uncertainty"][pinned] = 0.0
    maps["entropy"][pinned] = 0.0


def _slab(shape: tuple[int, int, int], prepared: PreparedVolume) -> np.ndarray:
    """(*shape) bool: the voxels of the re-sampled source slices."""
    slab = np.zeros(shape, dtype=bool)
    index = [slice(None)] * 3
    index[prepared.frame.slice_axis] = sorted(prepared.source_slices)
    slab[tuple(index)] = True
    return slab
