"""Checking the volumes chosen for a run before anything is written or started.

Every problem is a sentence that names the volume or modality and says what to do; the panel
shows the first one as the Apply button's tooltip and the logic raises it as
:class:`DiffSegInputError`. Checking never changes the scene.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from . import geometry, volumeio
from .models import MODALITY_LABELS, ModelCard

#: Inputs must share at least this fraction of the reference volume's physical extent.
MIN_OVERLAP = 0.10


class DiffSegInputError(ValueError):
    """The inputs of a run are not usable; the message says why and how to fix it."""


def _label(modality: str) -> str:
    return MODALITY_LABELS.get(modality, modality)


def input_problems(card: ModelCard, volumes: Mapping[str, object],
                   slices: tuple[int, int] | None = None) -> list[str]:
    """All reasons why ``volumes`` (modality → volume node or None) cannot be run with ``card``.

    Checks, in order: every modality the card requires has a volume (optional ones may be None); each
    given one is a scalar (not label, not
    vector) volume with 3D image data, finite and not constant; no volume is used twice; every
    volume overlaps the reference volume (the card's first modality) in physical space; the
    optional slice range fits.
    """
    problems: list[str] = []
    missing = [m for m in card.required_modalities if volumes.get(m) is None]
    if missing:
        names = ", ".join(_label(m) for m in missing)
        optional = f"; {', '.join(_label(m) for m in card.optional_modalities)} optional" \
            if card.optional_modalities else ""
        problems.append(f"Select a volume for {names} (the model '{card.title}' needs "
                        f"{', '.join(_label(m) for m in card.required_modalities)}{optional}).")
        return problems

    chosen = card.given(volumes)
    for modality, node in chosen.items():
        if not node.IsA("vtkMRMLScalarVolumeNode") or node.IsA("vtkMRMLLabelMapVolumeNode"):
            problems.append(f"'{node.GetName()}' ({_label(modality)}) is not a scalar image volume; "
                            "choose an MRI volume, not a label map or segmentation.")
            continue
        image = node.GetImageData()
        if image is None or image.GetNumberOfPoints() == 0:
            problems.append(f"'{node.GetName()}' ({_label(modality)}) has no image data.")
            continue
        if image.GetNumberOfScalarComponents() != 1:
            problems.append(f"'{node.GetName()}' ({_label(modality)}) has {image.GetNumberOfScalarComponents()} "
                            "components per voxel; DiffSeg needs a single-component (grey-scale) MRI volume.")
            continue
        dims = image.GetDimensions()
        if min(dims) < 2:
            problems.append(f"'{node.GetName()}' ({_label(modality)}) is 2D ({dims[0]}×{dims[1]}×{dims[2]} voxels); "
                            "DiffSeg needs a 3D volume.")
            continue
        problem = voxel_problem(node)
        if problem:
            problems.append(f"'{node.GetName()}' ({_label(modality)}) {problem}")
    if problems:
        return problems

    seen: dict[str, str] = {}
    for modality, node in chosen.items():
        if node.GetID() in seen:
            problems.append(f"The same volume '{node.GetName()}' is selected for {_label(seen[node.GetID()])} and "
                            f"{_label(modality)}; each modality needs its own volume.")
        seen.setdefault(node.GetID(), modality)
    if problems:
        return problems

    reference = chosen[card.reference_modality]
    for modality, node in chosen.items():
        if node is reference:
            continue
        fraction = geometry.overlap_fraction(node, reference)
        if fraction < MIN_OVERLAP:
            problems.append(
                f"'{node.GetName()}' ({_label(modality)}) and '{reference.GetName()}' "
                f"({_label(card.reference_modality)}) do not overlap in physical space "
                f"({100 * fraction:.0f} % shared); register the volumes or fix their transforms first.")
    if problems:
        return problems

    if slices is not None:
        n = geometry.dimensions(reference)[geometry.slice_axis(reference)]
        a, b = slices
        if not 0 <= a < b <= n:
            problems.append(f"The slice range {a}:{b} is outside '{reference.GetName()}', which has {n} slices "
                            f"(valid: 0 ≤ start < stop ≤ {n}).")
    return problems


#: (node ID, image MTime) → verdict of :func:`voxel_problem`: the panel re-checks on every change,
#: and scanning a 240×240×155 volume for NaN costs ~10 ms; a modified image has a new MTime.
_VOXEL_VERDICTS: dict[tuple[str, int], str | None] = {}


def voxel_problem(node) -> str | None:
    """What is wrong with the voxel values of a scalar volume (NaN/inf or constant), else None.

    The engine refuses the same images, but only seconds later and naming its temporary file.
    """
    image = node.GetImageData()
    key = (node.GetID(), max(image.GetMTime(), image.GetPointData().GetScalars().GetMTime()))
    if key not in _VOXEL_VERDICTS:
        values = volumeio.array_kji(node)
        bad = int(values.size - np.count_nonzero(np.isfinite(values)))
        if bad:
            verdict = f"has {bad} NaN or infinite voxels; replace them (e.g. with 0) and try again."
        elif values.min() == values.max():
            verdict = f"is constant (every voxel is {values.flat[0]:g}): it holds no image; choose the MRI volume."
        else:
            verdict = None
        if len(_VOXEL_VERDICTS) > 32:
            _VOXEL_VERDICTS.clear()
        _VOXEL_VERDICTS[key] = verdict
    return _VOXEL_VERDICTS[key]
