"""Foreground detection and per-modality intensity normalisation to [0, 1].

Three storage conventions occur in brain-tumour MRI and must give comparable results:
raw scanner values (background exactly 0), z-scored brains (background a constant negative value,
≈ −3 … −5) and min–max scaled slices ([0, 1], background 0). All three are skull-stripped with a
constant background; anything else (e.g. noisy, not skull-stripped) falls back to Otsu's threshold.
"""

from __future__ import annotations

import numpy as np

from DiffSegExtension.errors import DiffSegInputError

#: A constant background must cover at least this fraction of the voxels ...
_MIN_BACKGROUND_FRACTION = 0.01
#: ... and at least this fraction of the voxels below Otsu's threshold (noise in air is not constant).
_MIN_DARK_CLASS_SHARE = 0.5


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of ``values`` (any shape): maximises the between-class variance of a histogram."""
    values = np.asarray(values, dtype=np.float64).ravel()
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        return lo
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    centres = 0.5 * (edges[:-1] + edges[1:])
    weight0 = np.cumsum(counts)[:-1].astype(np.float64)
    weight1 = counts.sum() - weight0
    mass0 = np.cumsum(counts * centres)[:-1]
    mean0 = mass0 / np.maximum(weight0, 1)
    mean1 = (np.sum(counts * centres) - mass0) / np.maximum(weight1, 1)
    between = weight0 * weight1 * (mean0 - mean1) ** 2
    return float(edges[1:-1][np.argmax(between)])


def foreground_mask(volume: np.ndarray) -> np.ndarray:
    """Boolean mask (same shape) of the non-background voxels of one modality.

    A constant background is the image minimum or exactly 0 when that value fills ≥ 1 % of the voxels
    and most of Otsu's dark class; the foreground is then every other voxel. Without one, the
    foreground is the voxels above Otsu's threshold.
    """
    volume = np.asarray(volume)
    finite = np.isfinite(volume)
    values = volume if finite.all() else volume[finite]
    if values.size == 0 or values.min() == values.max():
        return np.zeros(volume.shape, dtype=bool)
    lo, hi = float(values.min()), float(values.max())
    tolerance = 1e-6 * (hi - lo)  # float noise in stored constant backgrounds
    at_min = np.abs(volume - lo) <= tolerance
    if np.count_nonzero(at_min) >= 0.5 * volume.size:  # then it is surely most of the dark class: skip Otsu
        return ~at_min
    threshold = otsu_threshold(values)
    dark = max(int(np.count_nonzero(volume <= threshold)), 1)
    for at_value in (at_min, np.abs(volume) <= tolerance):
        count = int(np.count_nonzero(at_value))
        if count >= _MIN_BACKGROUND_FRACTION * volume.size and count >= _MIN_DARK_CLASS_SHARE * dark:
            return ~at_value
    return volume > threshold


def normalise(volume: np.ndarray, mask: np.ndarray, percentiles: tuple[float, float] = (1.0, 99.0)) -> np.ndarray:
    """``volume`` clipped to the ``percentiles`` of its values inside ``mask`` and scaled to [0, 1].

    Voxels outside ``mask`` are set to 0. Returns float32, same shape as ``volume``.
    """
    volume = np.asarray(volume, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != volume.shape:
        raise DiffSegInputError(f"normalise: mask shape {mask.shape} differs from volume shape {volume.shape}; "
                                "give a mask of the volume's grid")
    low_pct, high_pct = percentiles
    if not 0.0 <= low_pct < high_pct <= 100.0:
        raise DiffSegInputError(f"clip percentiles {percentiles} are invalid: give 0 <= low < high <= 100")
    inside = volume[mask]
    if inside.size == 0:
        raise DiffSegInputError("the image has no foreground (no voxel differs from the background): "
                                "check that the right file was given")
    low, high = np.percentile(inside, [low_pct, high_pct])
    if high <= low:
        raise DiffSegInputError(f"the foreground intensities are constant between the {low_pct}th and "
                                f"{high_pct}th percentiles ({low:g}): the image holds no contrast")
    out = (volume - np.float32(low)) / np.float32(high - low)
    np.clip(out, 0.0, 1.0, out=out)
    out[~mask] = 0.0
    return out.astype(np.float32, copy=False)
