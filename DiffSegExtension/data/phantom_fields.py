"""Random-field helpers for the phantom: Gaussian-smoothed noise, blurring, ellipsoids, rotations.

Smoothing is a Gaussian filter applied in the Fourier domain (periodic boundaries; the phantom's
content stays away from the volume's faces), with ``sigma`` in millimetres so anisotropic voxels
give isotropic structures.
"""

from __future__ import annotations

import numpy as np


def _gaussian_transfer(shape: tuple[int, ...], spacing: np.ndarray, sigma_mm: float) -> np.ndarray:
    """Fourier transfer function of a Gaussian of ``sigma_mm`` for ``np.fft.rfftn`` of ``shape``."""
    freqs = [np.fft.fftfreq(n, d=s) for n, s in zip(shape[:-1], spacing[:-1])]
    freqs.append(np.fft.rfftfreq(shape[-1], d=spacing[-1]))
    grids = np.meshgrid(*freqs, indexing="ij", sparse=True)
    k2 = sum(g ** 2 for g in grids)
    return np.exp(-2.0 * np.pi ** 2 * sigma_mm ** 2 * k2)


def blur(volume: np.ndarray, spacing: np.ndarray, sigma_mm: float) -> np.ndarray:
    """``volume`` (3D float) smoothed by an isotropic Gaussian of ``sigma_mm`` (mm)."""
    transfer = _gaussian_transfer(volume.shape, np.asarray(spacing, dtype=np.float64), sigma_mm)
    return np.fft.irfftn(np.fft.rfftn(volume) * transfer, s=volume.shape)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], spacing: np.ndarray, sigma_mm: float) -> np.ndarray:
    """White noise smoothed to a correlation length of ~``sigma_mm``; zero mean, unit standard deviation."""
    field = blur(rng.standard_normal(shape), spacing, sigma_mm)
    field -= field.mean()
    return field / max(float(field.std()), 1e-12)


def ellipsoid_radius(points: np.ndarray, semi_axes: np.ndarray) -> np.ndarray:
    """Normalised radius ||p / a|| of points (3, ...) for an axis-aligned ellipsoid (< 1 inside)."""
    scaled = points / np.asarray(semi_axes, dtype=np.float64).reshape(3, *([1] * (points.ndim - 1)))
    return np.sqrt((scaled ** 2).sum(axis=0))


def random_rotation(rng: np.random.Generator, degrees: tuple[float, float]) -> np.ndarray:
    """A 3×3 rotation about two distinct random world axes, each by ±U(degrees) degrees."""
    first, second = rng.choice(3, size=2, replace=False)
    rotation = np.eye(3)
    for axis in (first, second):
        angle = np.deg2rad(rng.uniform(*degrees)) * rng.choice([-1.0, 1.0])
        a, b = [i for i in range(3) if i != axis]
        r = np.eye(3)
        r[a, a] = r[b, b] = np.cos(angle)
        r[a, b], r[b, a] = -np.sin(angle), np.sin(angle)
        rotation = r @ rotation
    return rotation
