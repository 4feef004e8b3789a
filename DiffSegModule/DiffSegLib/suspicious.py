"""Warnings about chosen volumes that look unlike the models' training data (a warning, not an error).

The same two rules, with the same constants, as the engine's
``DiffSegExtension/data/input_checks.py`` (which the CLI applies; the Slicer process never imports
the engine): a volume that does not look skull-stripped, and a volume whose brain does not cover
the reference volume's brain in physical space (not co-registered). Here they run on volume
nodes: each volume's background on its own grid, the overlap on the reference grid with parent
transforms applied. numpy + MRML only.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from . import geometry, volumeio
from .models import MODALITY_LABELS, ModelCard

#: See the engine's ``input_checks``: same values, checked equal by the tests.
MIN_BACKGROUND_FRACTION = 0.25
MAX_BRAIN_ML = 2500.0
MIN_REFERENCE_COVERAGE = 0.90
_ADVICE = ("the models expect skull-stripped images (BraTS-style): strip the skull first "
           "(e.g. HD-BET or SynthStrip), or check the result closely.")


def background_mask(values: np.ndarray) -> np.ndarray:
    """Voxels at the image's minimum (within float noise): the constant background of a stripped image."""
    lo, hi = float(values.min()), float(values.max())
    return ~(values > lo + 1e-6 * (hi - lo))


def _name(node, modality: str) -> str:
    return f"'{node.GetName()}' ({MODALITY_LABELS.get(modality, modality)})"


def skull_strip_warning(node, modality: str, background: np.ndarray) -> str | None:
    """A warning when ``node`` (with this background mask, KJI) does not look skull-stripped, else None."""
    fraction = float(background.mean())
    if fraction < MIN_BACKGROUND_FRACTION:
        return (f"{_name(node, modality)} does not look skull-stripped: only {100 * fraction:.0f} % of its voxels "
                f"hold one constant background value; {_ADVICE}")
    voxel_ml = abs(float(np.linalg.det(geometry.ijk_to_ras(node)[:3, :3]))) / 1000.0
    foreground_ml = float((~background).sum()) * voxel_ml
    if foreground_ml > MAX_BRAIN_ML:
        return (f"{_name(node, modality)} does not look skull-stripped: its non-background part is "
                f"{foreground_ml:.0f} ml, more than a brain (about 1200–1800 ml); {_ADVICE}")
    return None


def _foreground_on_reference(node, foreground: np.ndarray, reference) -> np.ndarray:
    """``node``'s foreground mask (KJI, its own grid) resampled onto ``reference``'s grid (nearest)."""
    image = volumeio.image_from_array(foreground.astype(np.uint8))
    resampled = geometry.resample_to_reference(node, reference, interpolation="nearest", image=image)
    return volumeio.array_kji_image(resampled) > 0


def input_warnings(card: ModelCard, volumes: Mapping[str, object]) -> list[str]:
    """Warnings for the volumes a run would use (modality → node; call after the input checks passed)."""
    chosen = card.given(volumes)
    warnings, foregrounds = [], {}
    for modality, node in chosen.items():
        background = background_mask(volumeio.array_kji(node))
        warning = skull_strip_warning(node, modality, background)
        if warning:
            warnings.append(warning)
        elif not background.all():  # an empty image has no outline to compare
            foregrounds[modality] = ~background
    reference_modality = card.reference_modality
    if reference_modality not in foregrounds:
        return warnings
    reference = chosen[reference_modality]
    brain = foregrounds[reference_modality]
    for modality, foreground in foregrounds.items():
        if modality == reference_modality:
            continue
        covered = _foreground_on_reference(chosen[modality], foreground, reference)
        coverage = float(np.logical_and(covered, brain).sum()) / max(int(brain.sum()), 1)
        if coverage < MIN_REFERENCE_COVERAGE:
            warnings.append(
                f"{_name(chosen[modality], modality)} covers only {100 * coverage:.0f} % of the brain in "
                f"{_name(reference, reference_modality)} in physical space: the volumes look not co-registered "
                f"(or it has a smaller field of view); register them first (e.g. with General Registration "
                f"(BRAINS)), or check the result closely.")
    return warnings
