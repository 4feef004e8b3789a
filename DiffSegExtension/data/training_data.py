"""Random training batches of axial slices (images + region masks) held in memory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from DiffSegExtension.config import PreprocessConfig
from DiffSegExtension.data import click_simulation
from DiffSegExtension.data.loading import Case
from DiffSegExtension.data.preparation import prepare_volume
from DiffSegExtension.errors import DiffSegInputError

#: Mild intensity augmentation: per modality x → x·(1 ± 10 %) ± 0.1 inside the brain.
_SCALE_RANGE = 0.10
_SHIFT_RANGE = 0.10


@dataclass
class TrainingBatch:
    """images (B, M, c, c) float32 in [0, 1] (absent modalities 0); masks (B, R, c, c) float32 in
    {−1, +1} per region; present (B, M) bool, which modalities each item has; weights (B, R) float32,
    1 where the item's label annotates the region (a whole-tumour-only label scores WT only); known
    (B, R, c, c) int8 simulated guidance (+1 inside, −1 not inside, 0 open) when hints were asked for."""

    images: torch.Tensor
    masks: torch.Tensor
    present: torch.Tensor
    weights: torch.Tensor
    known: torch.Tensor | None = None


class SliceDataset:
    """Every brain slice of ``cases``, prepared as for inference and stored as float16.

    Slice i: images (M, H_c, W_c) in [0, 1], label (R, H_c, W_c) {0, 1} per region, brain (H_c, W_c);
    H_c × W_c is the case's brain box (a multiple of ``size_multiple``), so cases may differ in size.
    Cases may lack ``optional`` modalities (their channel is 0) and may annotate only the whole tumour.
    """

    def __init__(self, cases: Sequence[Case], modalities: Sequence[str], preprocess: PreprocessConfig,
                 size_multiple: int, regions: Sequence[str] = ("wt",), optional: Sequence[str] = ()):
        if not cases:
            raise DiffSegInputError("no training cases given: give at least one case with a label")
        self.modalities = tuple(modalities)
        self.regions = tuple(regions)
        self.optional = tuple(optional)
        self.preprocess = preprocess
        self.size_multiple = int(size_multiple)
        self._images: list[torch.Tensor] = []  # per case (S, M, H, W) float16
        self._labels: list[torch.Tensor] = []  # per case (S, R, H, W) uint8
        self._brains: list[torch.Tensor] = []  # per case (S, H, W) bool
        self._present: list[torch.Tensor] = []  # per case (M,) bool
        self._weights: list[torch.Tensor] = []  # per case (R,) float32
        self._positions: list[list[float]] = []  # per case: mm of each slice along the slice axis
        self._pixel_mm: list[tuple[float, float]] = []  # per case: in-plane pixel size (rows, columns)
        self._index: list[tuple[int, int]] = []  # slice → (case, slice in case)
        self.case_names: list[str] = []
        for case in cases:
            if case.label is None:
                raise DiffSegInputError(f"training case {case.name} has no label: load it with with_label=True "
                                        "(a <case>_seg.nii.gz file is needed)")
            prepared = prepare_volume(case, self.modalities, preprocess, self.size_multiple, regions=self.regions,
                                      optional=self.optional)
            number = len(self._images)
            self._images.append(prepared.images.to(torch.float16))
            self._labels.append(prepared.region_label)
            self._brains.append(prepared.brain)
            self._present.append(torch.tensor(prepared.present))
            self._weights.append(torch.tensor([float(r in prepared.annotated) for r in self.regions]))
            self._positions.append([s * prepared.frame.canonical_spacing[2] for s in prepared.source_slices])
            self._pixel_mm.append(tuple(prepared.pixel_spacing))
            self._index.extend((number, s) for s in range(len(prepared)))
            self.case_names.append(case.name)
        self.tumour_slices = [i for i, (c, s) in enumerate(self._index) if bool(self._labels[c][s, 0].any())]

    def __len__(self) -> int:
        return len(self._index)

    def full_slice(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Uncropped slice ``index``: images (M, H, W) float32, label (R, H, W) uint8, brain (H, W) bool."""
        case, s = self._index[index]
        return self._images[case][s].float(), self._labels[case][s], self._brains[case][s]

    def sample_batch(self, generator: torch.Generator, batch_size: int, crop: int | None = None,
                     augment: bool = True, tumour_fraction: float = 0.5, modality_dropout: float = 0.0,
                     hint_rate: float | None = None) -> TrainingBatch:
        """A random :class:`TrainingBatch` of c × c crops.

        ``c`` = ``crop`` or ``preprocess.train_crop`` (a multiple of the size multiple). The first
        round(``tumour_fraction``·B) items come from slices with tumour, their crop centred on a random
        tumour pixel (± c/4); the rest from any slice at a random position. Slices smaller than c are
        zero-padded (at a random offset). With ``augment``: random flips of both in-plane axes and a
        per-modality intensity scale/shift inside the brain. With probability ``modality_dropout`` an
        item drops each of its optional modalities with probability ½ (sequence drop-out, so one model
        serves every subset). With ``hint_rate`` (not ``None``), ``known`` holds simulated clicks
        (:mod:`~DiffSegExtension.data.click_simulation`) for that share of items, none for the others (so one
        model serves unguided and guided runs). All randomness comes from ``generator``: the same generator
        state gives a bit-identical batch, and without ``hint_rate`` the same batch as before hints existed.
        """
        c = int(crop if crop is not None else self.preprocess.train_crop)
        if c <= 0 or c % self.size_multiple:
            raise DiffSegInputError(f"training crop {c} must be a positive multiple of {self.size_multiple} "
                                    "(the network's size multiple)")
        if batch_size < 1 or not 0.0 <= tumour_fraction <= 1.0:
            raise DiffSegInputError(f"batch size {batch_size} must be >= 1 and tumour fraction {tumour_fraction} "
                                    "in [0, 1]")
        n_tumour = round(tumour_fraction * batch_size) if self.tumour_slices else 0
        m = len(self.modalities)
        optional = torch.tensor([name in self.optional for name in self.modalities])
        batch = TrainingBatch(images=torch.zeros((batch_size, m, c, c), dtype=torch.float32),
                              masks=torch.full((batch_size, len(self.regions), c, c), -1.0, dtype=torch.float32),
                              present=torch.zeros((batch_size, m), dtype=torch.bool),
                              weights=torch.zeros((batch_size, len(self.regions)), dtype=torch.float32),
                              known=None if hint_rate is None else
                              torch.zeros((batch_size, len(self.regions), c, c), dtype=torch.int8))
        for b in range(batch_size):
            # Fixed draw order per item (whatever the branch), so batches do not depend on data content.
            u = torch.rand(6 + 3 * m + 1, generator=generator, dtype=torch.float64).tolist()
            from_tumour = b < n_tumour
            pool = self.tumour_slices if from_tumour else range(len(self))
            index = pool[min(int(u[0] * len(pool)), len(pool) - 1)]
            image, label, brain = self.full_slice(index)
            case = self._index[index][0]
            spatial = [image, label, brain]
            if hint_rate is not None:
                h = torch.rand(1 + click_simulation.DRAWS, generator=generator, dtype=torch.float64).tolist()
                spatial.append(self._simulated_known(index, h[1:]) if h[0] < hint_rate
                               else torch.zeros_like(label, dtype=torch.int8))
            origin = self._origin(tuple(brain.shape), label[0] if from_tumour else None, c, u[1:4])
            spatial = [_window(t, origin, c) for t in spatial]
            if augment:
                spatial = self._augment(spatial, u[4:6 + 2 * m])
            image, label, brain = spatial[:3]
            if batch.known is not None:
                batch.known[b] = spatial[3]
            present = self._present[case].clone()
            if u[6 + 2 * m] < modality_dropout:
                drop = torch.tensor(u[7 + 2 * m:7 + 3 * m]) < 0.5
                present &= ~(drop & optional)
            batch.images[b] = image * present[:, None, None]
            batch.masks[b] = label.float() * 2.0 - 1.0
            batch.present[b] = present
            batch.weights[b] = self._weights[case]
        return batch

    @staticmethod
    def _origin(shape: tuple[int, int], label: torch.Tensor | None, c: int, u: list[float]) -> tuple[int, int]:
        """Top-left corner (may be negative) of the c × c window in slice coordinates.

        Positions are limited so that the window stays inside the slice, or the slice inside the
        window when the slice is smaller. Without ``label``: uniform over those positions. With it:
        centred on a random tumour pixel (``u[0]``) ± c/4 (``u[1]``, ``u[2]``), so that pixel is in the window.
        """
        centre = None
        if label is not None:
            pixels = torch.nonzero(label)
            centre = pixels[min(int(u[0] * len(pixels)), len(pixels) - 1)].tolist()
        origin = []
        for axis in (0, 1):
            low, high = min(0, shape[axis] - c), max(0, shape[axis] - c)
            if centre is None:
                position = low + min(int(u[1 + axis] * (high - low + 1)), high - low)
            else:
                position = round(centre[axis] - c / 2 + (2.0 * u[1 + axis] - 1.0) * c / 4)
            origin.append(min(max(position, low), high))
        return origin[0], origin[1]

    def _simulated_known(self, index: int, u: list[float]) -> torch.Tensor:
        """Simulated clicks on uncropped slice ``index``: (R, H, W) int8."""
        case, s = self._index[index]
        annotated = [r for r in range(len(self.regions)) if self._weights[case][r] > 0]
        return click_simulation.simulate_known(self._labels[case], self._brains[case], s, self._positions[case],
                                               self._pixel_mm[case], annotated, u)

    def _augment(self, spatial: list[torch.Tensor], u: list[float]) -> list[torch.Tensor]:
        """[image, label, brain, (known)] flipped alike; the image's intensities scaled/shifted in the brain."""
        for axis, draw in ((-2, u[0]), (-1, u[1])):
            if draw < 0.5:
                spatial = [t.flip(axis) for t in spatial]
        image, brain = spatial[0], spatial[2]
        m = image.shape[0]
        scale = torch.tensor([1.0 + _SCALE_RANGE * (2 * v - 1) for v in u[2:2 + m]], dtype=torch.float32)
        shift = torch.tensor([_SHIFT_RANGE * (2 * v - 1) for v in u[2 + m:2 + 2 * m]], dtype=torch.float32)
        changed = (image * scale[:, None, None] + shift[:, None, None]).clamp_(0.0, 1.0)
        # The background stays exactly 0, as it always is at inference.
        return [torch.where(brain, changed, image), *spatial[1:]]


def _window(t: torch.Tensor, origin: tuple[int, int], c: int) -> torch.Tensor:
    """The c × c window at ``origin`` of the last two axes of ``t``, zero outside the slice."""
    out = torch.zeros((*t.shape[:-2], c, c), dtype=t.dtype)
    h, w = t.shape[-2:]
    r0, r1 = max(origin[0], 0), min(origin[0] + c, h)
    c0, c1 = max(origin[1], 0), min(origin[1] + c, w)
    if r1 > r0 and c1 > c0:
        out[..., r0 - origin[0]:r1 - origin[0], c0 - origin[1]:c1 - origin[1]] = t[..., r0:r1, c0:c1]
    return out
