"""Warnings about inputs that load fine but look unlike what the models were trained on.

The bundled models saw BraTS-style images: skull-stripped (everything outside the brain one
constant value, usually 0) and co-registered (all sequences of a case on the same anatomy). Two
heuristics flag inputs that are not; they warn, they never refuse — the clinician decides.

* **Not skull-stripped**: less than :data:`MIN_BACKGROUND_FRACTION` of the voxels hold the image's
  constant background value (raw scans have noisy air around the head), or the non-background
  part is larger than :data:`MAX_BRAIN_ML` (a whole head with skull and scalp, not a brain).
* **Not co-registered**: on the reference grid, the foreground (non-background voxels) of a
  sequence covers less than :data:`MIN_REFERENCE_COVERAGE` of the reference sequence's foreground
  (its brain). Only judged between images that both look skull-stripped (otherwise "foreground" is
  the field of view). Coverage, not Dice: a sequence whose field of view is larger than the
  reference's (BraTS 2013 FLAIR) is fine; a shifted or partial one is not.

Pure numpy; the Slicer module applies the same rules with the same constants
(``DiffSegModule/DiffSegLib/suspicious.py``).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

#: A skull-stripped image has at least this fraction of its voxels at one constant background value.
MIN_BACKGROUND_FRACTION = 0.25
#: A brain (with its CSF) fills about 1200–1800 ml; a larger foreground includes skull and scalp.
MAX_BRAIN_ML = 2500.0
#: Co-registered, skull-stripped sequences cover each other's brain (≥ 0.99 on every BraTS case in
#: ../shared/data); a 5 mm shift of the phantom brain already drops this below 0.90.
MIN_REFERENCE_COVERAGE = 0.90

_LABELS = {"flair": "FLAIR", "t1": "T1", "t1ce": "T1ce", "t2": "T2"}


def background_mask(image: np.ndarray) -> np.ndarray:
    """Voxels at the image's minimum (within float noise): the constant background of a stripped image."""
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return np.ones(image.shape, dtype=bool)
    lo, hi = float(finite.min()), float(finite.max())
    return ~(image > lo + 1e-6 * (hi - lo))


def skull_strip_warning(name: str, background: np.ndarray, voxel_ml: float) -> str | None:
    """A warning when a background mask does not look like that of a skull-stripped image, else None."""
    fraction = float(background.mean())
    advice = ("the models expect skull-stripped images (BraTS-style): strip the skull first "
              "(e.g. HD-BET or SynthStrip), or check the result closely")
    if fraction < MIN_BACKGROUND_FRACTION:
        return (f"{name} does not look skull-stripped: only {100 * fraction:.0f} % of its voxels hold one constant "
                f"background value; {advice}")
    foreground_ml = float((~background).sum()) * voxel_ml
    if foreground_ml > MAX_BRAIN_ML:
        return (f"{name} does not look skull-stripped: its non-background part is {foreground_ml:.0f} ml, more than "
                f"a brain (about 1200–1800 ml); {advice}")
    return None


def registration_warning(name: str, reference_name: str, foreground: np.ndarray,
                         reference_foreground: np.ndarray) -> str | None:
    """A warning when ``foreground`` covers too little of ``reference_foreground`` (same grid), else None."""
    reference_voxels = int(reference_foreground.sum())
    covered = int(np.logical_and(foreground, reference_foreground).sum())
    coverage = 1.0 if reference_voxels == 0 else covered / reference_voxels
    if coverage >= MIN_REFERENCE_COVERAGE:
        return None
    return (f"{name} covers only {100 * coverage:.0f} % of the brain in {reference_name} in physical space: the "
            f"sequences look not co-registered (or {name} has a smaller field of view); register {name} to "
            f"{reference_name} first, or check the result closely")


def input_warnings(images: Mapping[str, np.ndarray], affine: np.ndarray,
                   names: Mapping[str, str] | None = None) -> list[str]:
    """Warnings for one loaded case (empty list: nothing suspicious).

    :param images: modality → 3D array, all on the reference grid (the first entry is the reference),
        as :func:`DiffSegExtension.data.loading.load_case` returns them.
    :param affine: 4×4 voxel → RAS mm transform of that grid (gives the voxel volume).
    :param names: modality → how to name it in the message (default: FLAIR, T1, T1ce, T2).
    """
    names = {m: (names or {}).get(m, _LABELS.get(m, m)) for m in images}
    voxel_ml = abs(float(np.linalg.det(np.asarray(affine, dtype=float)[:3, :3]))) / 1000.0
    warnings, stripped = [], {}
    for modality, image in images.items():
        background = background_mask(np.asarray(image))
        warning = skull_strip_warning(names[modality], background, voxel_ml)
        if warning:
            warnings.append(warning)
        elif not background.all():  # an empty image (e.g. a missing sequence filled with 0) has no outline
            stripped[modality] = ~background
    reference = next(iter(images))
    if reference in stripped:
        for modality, foreground in stripped.items():
            if modality != reference:
                warning = registration_warning(names[modality], names[reference], foreground, stripped[reference])
                if warning:
                    warnings.append(warning)
    return warnings
