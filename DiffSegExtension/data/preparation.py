"""Volume → network-ready axial slices, and network output maps → back onto the source grid.

Forward (:func:`prepare_volume`): reorient exactly to the canonical frame, normalise each modality,
select the slices with brain, resample in-plane to the model's pixel spacing, crop all slices to one
common brain box and zero-pad to the network's size multiple. Backward (:meth:`PreparedVolume.restore`)
undoes each step in reverse order. In-plane resampling on both ways uses PyTorch's
``align_corners=False`` convention (the image's outer pixel edges stay fixed), so pixel centres map
onto each other and the round trip is unbiased.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from DiffSegExtension.config import PreprocessConfig
from DiffSegExtension.data.geometry import CanonicalFrame
from DiffSegExtension.data.loading import Case
from DiffSegExtension.data.modalities import canonical_modality
from DiffSegExtension.data.normalise import foreground_mask, normalise
from DiffSegExtension.errors import DiffSegInputError
from DiffSegExtension.regions import annotated_regions, region_masks

#: In-plane resampling is skipped when the spacing is within this relative tolerance of the target.
_SPACING_TOLERANCE = 1e-3


@dataclass
class PreparedVolume:
    """The selected slices of one case, ready for the network, and what is needed to map back.

    ``images``: (S, M, H, W) float32 in [0, 1] — S selected canonical slices, M modalities (in the
    order asked for), H × W = canonical axes 0 × 1 (default LPS: left × posterior) at
    ``pixel_spacing`` mm, H and W multiples of the size multiple. Outside the brain: 0.
    ``brain``: (S, H, W) bool; ``label`` (a property): (S, H, W) uint8 whole tumour, or ``None``.
    ``region_label``: (S, R, H, W) uint8 masks of the asked regions (WT first), or ``None``;
    ``annotated``: the regions the case's label file really annotates (a binary label only WT).
    ``present``: per modality, whether the case has it (an absent optional modality is all 0).
    ``source_slices[s]``: index along the source voxel axis ``frame.slice_axis`` of slice s.
    """

    images: torch.Tensor
    brain: torch.Tensor
    source_slices: list[int]
    frame: CanonicalFrame
    modalities: tuple[str, ...]
    region_label: torch.Tensor | None
    annotated: tuple[str, ...]
    present: tuple[bool, ...]
    #: Actual in-plane pixel size (mm) of ``images`` along H and W.
    pixel_spacing: tuple[float, float]
    _canonical_slices: list[int] = field(repr=False)
    _inplane_shape: tuple[int, int] = field(repr=False)  # canonical (n0, n1) before resampling
    _resampled_shape: tuple[int, int] = field(repr=False)  # (n0', n1') after resampling
    _offset: tuple[int, int] = field(repr=False)  # (row, col) of images[..., 0, 0] in the resampled slice

    def __len__(self) -> int:
        return len(self.source_slices)

    @property
    def label(self) -> torch.Tensor | None:
        """(S, H, W) uint8 whole-tumour mask: the first channel of ``region_label`` (or ``None``)."""
        return None if self.region_label is None else self.region_label[:, 0]

    @property
    def resampled(self) -> bool:
        return self._resampled_shape != self._inplane_shape

    def restore(self, maps: np.ndarray | torch.Tensor, fill: float = 0.0) -> np.ndarray:
        """Per-slice maps (S, H, W) → float32 volume on the source grid (shape and axis order of the case);
        (S, C, H, W) → (C, *that shape), one map after the other (a whole-volume map is tens of MB).

        Un-pads, un-crops, resamples back to the original in-plane size (bilinear) and undoes the
        reorientation; slices that were not selected and pixels outside the box get ``fill``.
        """
        maps = torch.as_tensor(np.asarray(maps) if not isinstance(maps, torch.Tensor) else maps)
        maps = maps.detach().to(device="cpu", dtype=torch.float32)
        expected = (len(self), *self.images.shape[2:])
        if maps.ndim not in (3, 4) or (maps.shape[0], *maps.shape[-2:]) != expected:
            raise DiffSegInputError(f"maps of shape {tuple(maps.shape)} do not match the prepared slices "
                                    f"{expected}: give one (H, W) map per prepared slice")
        shape = (1 if maps.ndim == 3 else maps.shape[1], *self.frame.shape)
        # With fill 0 (every map the engine writes), zeros from calloc: only the slices written are ever touched.
        volumes = np.zeros(shape, dtype=np.float32) if fill == 0.0 else np.full(shape, fill, dtype=np.float32)
        self.restore_slab(volumes, maps[:, None] if maps.ndim == 3 else maps, fill)
        return volumes[0] if maps.ndim == 3 else volumes

    def restore_slab(self, volumes: np.ndarray, maps: torch.Tensor, fill: float = 0.0) -> None:
        """Write :meth:`restore` of per-slice maps (S, C, H, W) into ``volumes`` (C, *source shape), on this
        volume's source slices only (their pixels outside the box get ``fill``; every other voxel is left as it
        is): a few re-sampled slices without building whole volumes."""
        order = np.argsort(self._canonical_slices)
        index = [slice(None)] * 3
        index[self.frame.slice_axis] = _as_slice(sorted(self.source_slices))
        for c in range(maps.shape[1]):
            canvas = self._restore_canvas(maps[:, c].detach().to(device="cpu", dtype=torch.float32), fill)
            volumes[c][tuple(index)] = self.frame.slab_from_canonical(canvas.permute(1, 2, 0).numpy()[:, :, order])

    def _restore_canvas(self, maps: torch.Tensor, fill: float) -> torch.Tensor:
        """One (S, H, W) float32 map → (S, n0, n1): each slice at the canonical in-plane size, ``fill`` outside the box."""
        n0, n1 = self._resampled_shape
        (grid_r, win_r), (grid_c, win_c) = (_overlap(self._offset[0], maps.shape[1], n0),
                                          _overlap(self._offset[1], maps.shape[2], n1))
        inside = maps[:, win_r, win_c]
        if not self.resampled:
            canvas = torch.full((len(self), n0, n1), float(fill), dtype=torch.float32)
            canvas[:, grid_r, grid_c] = inside
        else:
            # Extend the box's border values outward so the interpolation near the box edge does not
            # mix in `fill` (which may be NaN), then put `fill` where the box does not reach.
            pads = (grid_c.start, n1 - grid_c.stop, grid_r.start, n0 - grid_r.stop)
            canvas = _resize(F.pad(inside[:, None], pads, mode="replicate"), self._inplane_shape)[:, 0]
            box = torch.zeros((1, n0, n1), dtype=torch.bool)
            box[:, grid_r, grid_c] = True
            canvas[:, ~_resize_mask(box, self._inplane_shape)[0]] = float(fill)
        return canvas

    def to_slices(self, volume: np.ndarray) -> torch.Tensor:
        """A volume on the source grid (the case's shape and axis order) → (S, H, W) float32 in the slices'
        layout, the forward counterpart of :meth:`restore`: reoriented, the selected slices taken, resampled
        in-plane (bilinear, as the images) and cropped / zero-padded like ``images``."""
        canonical = self.frame.to_canonical(np.asarray(volume, dtype=np.float32))[:, :, self._canonical_slices]
        maps = torch.from_numpy(canonical.transpose(2, 0, 1).copy())
        if self.resampled:
            maps = _resize(maps[:, None], self._resampled_shape)[:, 0]
        out = torch.zeros((len(self), *self.images.shape[2:]), dtype=torch.float32)
        (grid_r, win_r), (grid_c, win_c) = (_overlap(self._offset[0], out.shape[1], self._resampled_shape[0]),
                                          _overlap(self._offset[1], out.shape[2], self._resampled_shape[1]))
        out[:, win_r, win_c] = maps[:, grid_r, grid_c]
        return out

    def select(self, indices: Sequence[int]) -> "PreparedVolume":
        """The prepared slices ``indices`` (ascending positions into this volume) alone, same crop box."""
        keep = list(indices)
        pick = lambda t: None if t is None else t[keep]  # noqa: E731  (list indexing copies)
        return replace(self, images=pick(self.images), brain=pick(self.brain), region_label=pick(self.region_label),
                       source_slices=[self.source_slices[i] for i in keep],
                       _canonical_slices=[self._canonical_slices[i] for i in keep])


def _as_slice(ascending: list[int]) -> slice | list[int]:
    """Consecutive indices as a slice (assigning through a view is several times faster than through a list)."""
    return slice(ascending[0], ascending[-1] + 1) if ascending[-1] - ascending[0] + 1 == len(ascending) else ascending


def prepare_volume(case: Case, modalities: Sequence[str], preprocess: PreprocessConfig, size_multiple: int,
                   slice_range: tuple[int, int] | None = None, min_brain_pixels: int = 64,
                   margin: int = 4, regions: Sequence[str] = ("wt",), optional: Sequence[str] = (),
                   keep: Sequence[int] | None = None) -> PreparedVolume:
    """Turn ``case`` into a :class:`PreparedVolume` (see the module docstring for the steps).

    ``slice_range``: half-open [a, b) of SOURCE voxel indices along the superior–inferior axis
    (``frame.slice_axis``); ``None`` = every slice with at least ``min_brain_pixels`` brain pixels.
    ``keep``: only these source slices (of those) are prepared, with the crop box of all of them, so each
    comes out exactly as in the full preparation (``prepare_volume(...).select(...)``) at a fraction of the work.
    ``margin``: pixels (at the target spacing) added around the union of the slices' brain boxes.
    ``regions``: the region masks to prepare from the label; ``optional``: modalities the case may lack.
    """
    names, present = _modalities_of(case, modalities, optional)
    if size_multiple < 1:
        raise DiffSegInputError(f"size_multiple must be >= 1, got {size_multiple}")
    frame = CanonicalFrame(case.affine, case.shape, preprocess.orientation)
    images, brain = {}, np.zeros(frame.canonical_shape, dtype=bool)
    for name in (n for n, here in zip(names, present) if here):
        volume = case.images[name]
        foreground = foreground_mask(volume)
        images[name] = frame.to_canonical(normalise(volume, foreground, preprocess.clip_percentiles))
        brain |= frame.to_canonical(foreground)
    selected = _select_slices(case.name, frame, brain, slice_range, min_brain_pixels)
    brain_t = torch.from_numpy(brain[:, :, selected].transpose(2, 0, 1).copy())  # every selected slice: the box
    kept = list(range(len(selected))) if keep is None else kept_positions(case.name, frame, selected, keep)
    selected = [selected[i] for i in kept]

    # (S, M, n0, n1) slices of the canonical volumes; absent modalities are 0.
    empty = np.zeros(frame.canonical_shape[:2] + (len(selected),), dtype=np.float32)
    stack = torch.from_numpy(np.stack([images[n][:, :, selected] if n in images else empty for n in names])
                             .transpose(3, 0, 1, 2).copy())
    label_t, annotated = None, ()
    if case.label is not None:
        annotated = tuple(r for r in annotated_regions(case.label_map) if r in regions)
        masks = region_masks(case.label_map, regions)
        # (S, R, n0, n1), flattened to (S·R, n0, n1) for the shared mask resampling below.
        label_t = torch.from_numpy(np.stack([frame.to_canonical(m)[:, :, selected] for m in masks])
                                   .transpose(3, 0, 1, 2).copy()).flatten(0, 1)

    inplane = frame.canonical_shape[:2]
    spacing = frame.canonical_spacing[:2]
    target = float(preprocess.pixel_spacing_mm)
    resampled_shape = tuple(n if abs(s / target - 1.0) <= _SPACING_TOLERANCE else max(1, round(n * s / target))
                            for n, s in zip(inplane, spacing))
    if resampled_shape != inplane:
        stack = _resize(stack, resampled_shape).clamp_(0.0, 1.0)
        brain_t = _resize_mask(brain_t, resampled_shape)
        if label_t is not None:
            label_t = _resize_mask(label_t, resampled_shape)

    offset, size = _box(brain_t.any(dim=0), margin, size_multiple)
    brain_t = brain_t[kept]
    n_sel = len(selected)
    out_images = torch.zeros((n_sel, len(names), *size), dtype=torch.float32)
    out_brain = torch.zeros((n_sel, *size), dtype=torch.bool)
    out_label = torch.zeros((len(label_t), *size), dtype=torch.uint8) if label_t is not None else None
    (grid_r, win_r), (grid_c, win_c) = (_overlap(offset[0], size[0], resampled_shape[0]),
                                      _overlap(offset[1], size[1], resampled_shape[1]))
    out_images[:, :, win_r, win_c] = stack[:, :, grid_r, grid_c]
    out_brain[:, win_r, win_c] = brain_t[:, grid_r, grid_c]
    if out_label is not None:
        out_label[:, win_r, win_c] = label_t[:, grid_r, grid_c].to(torch.uint8)

    region_label = out_label.unflatten(0, (n_sel, len(regions))) if out_label is not None else None
    return PreparedVolume(
        images=out_images, brain=out_brain,
        source_slices=[frame.canonical_slice_to_source(k) for k in selected], frame=frame,
        modalities=tuple(names), region_label=region_label, annotated=annotated, present=tuple(present),
        pixel_spacing=tuple(n * s / r for n, s, r in zip(inplane, spacing, resampled_shape)),
        _canonical_slices=selected, _inplane_shape=tuple(inplane), _resampled_shape=tuple(resampled_shape),
        _offset=offset,
    )


def _modalities_of(case: Case, modalities: Sequence[str], optional: Sequence[str]) -> tuple[list[str], list[bool]]:
    """Canonical names of ``modalities`` and whether the case has each; a missing required one raises."""
    names = [canonical_modality(m) or m for m in modalities]
    optional = {canonical_modality(m) or m for m in optional}
    missing = [m for m in names if m not in case.images and m not in optional]
    if not names or missing or not any(m in case.images for m in names):
        raise DiffSegInputError(f"case {case.name} has no {', '.join(missing) or 'modalities'} image "
                                f"(it has {', '.join(case.images)}): load the case with the model's modalities")
    return names, [m in case.images for m in names]


def _select_slices(name: str, frame: CanonicalFrame, brain: np.ndarray, slice_range: tuple[int, int] | None,
                   min_brain_pixels: int) -> list[int]:
    """Ascending canonical slice indices with enough brain and inside ``slice_range`` (source indices)."""
    counts = brain.sum(axis=(0, 1))
    with_brain = [k for k in range(brain.shape[2]) if counts[k] >= min_brain_pixels]
    if not with_brain:
        raise DiffSegInputError(f"case {name} has no slice with at least {min_brain_pixels} brain pixels: "
                                "the images look empty; check that the right files were given")
    if slice_range is None:
        return with_brain
    start, stop = (int(v) for v in slice_range)
    if start >= stop:
        raise DiffSegInputError(f"slice range [{start}, {stop}) is empty: give start < stop (stop is exclusive)")
    selected = [k for k in with_brain if start <= frame.canonical_slice_to_source(k) < stop]
    if not selected:
        sources = sorted(frame.canonical_slice_to_source(k) for k in with_brain)
        raise DiffSegInputError(
            f"slice range [{start}, {stop}) of case {name} holds no slice with brain (along voxel axis "
            f"{frame.slice_axis}, {frame.shape[frame.slice_axis]} slices): the brain is in slices "
            f"{sources[0]}–{sources[-1]}; give a range that overlaps them")
    return selected


def kept_positions(name: str, frame: CanonicalFrame, selected: list[int], keep: Sequence[int]) -> list[int]:
    """Positions in ``selected`` (canonical slices) of the source slices ``keep``; none raises."""
    wanted = {int(k) for k in keep}
    kept = [i for i, k in enumerate(selected) if frame.canonical_slice_to_source(k) in wanted]
    if not kept:
        sources = sorted(frame.canonical_slice_to_source(k) for k in selected)
        asked = f"source slices {min(wanted)}–{max(wanted)}" if wanted else "no source slices"
        raise DiffSegInputError(f"{asked} of case {name} (voxel axis {frame.slice_axis}) hold no brain: the brain is in "
                                f"slices {sources[0]}–{sources[-1]}; choose slices with brain (guidance must lie inside it)")
    return kept


def _box(mask: torch.Tensor, margin: int, multiple: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(offset, size) of the window: ``mask``'s bounding box + ``margin``, grown (centred) to multiples."""
    offset, size = [], []
    for axis in (0, 1):
        hits = torch.nonzero(mask.any(dim=1 - axis)).flatten()
        n = mask.shape[axis]
        lo = max(int(hits.min()) - margin, 0) if len(hits) else 0
        hi = min(int(hits.max()) + 1 + margin, n) if len(hits) else n
        length = max(multiple, math.ceil((hi - lo) / multiple) * multiple)
        offset.append(lo - (length - (hi - lo)) // 2)
        size.append(length)
    return (offset[0], offset[1]), (size[0], size[1])


def _overlap(offset: int, length: int, n: int) -> tuple[slice, slice]:
    """(slice in the full grid [0, n), slice in the window) of window [offset, offset + length) ∩ [0, n)."""
    lo, hi = max(offset, 0), min(offset + length, n)
    return slice(lo, hi), slice(lo - offset, hi - offset)


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear, edge-preserving (``align_corners=False``), antialiased when shrinking. x: (N, C, H, W)."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)


def _resize_mask(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Binary mask (N, H, W) resized like the images, then thresholded at 0.5; same dtype.

    Rather than nearest neighbour: with an even shrink factor a new pixel centre lies exactly between
    old ones and nearest neighbour must pick one side, shifting the mask by half an old pixel.
    """
    return (_resize(x[:, None].float(), size)[:, 0] >= 0.5).to(x.dtype)
