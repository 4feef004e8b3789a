"""Physical-space resampling between voxel grids (nibabel affines → SimpleITK).

nibabel: array axes (i, j, k), ``affine`` maps (i, j, k, 1) to RAS millimetres.
SimpleITK: image index (x, y, z) = (i, j, k), physical points in LPS millimetres, and its numpy view
is (z, y, x) = (k, j, i). So an nibabel array goes in transposed (2, 1, 0), and the LPS geometry is
``diag(-1, -1, 1) @ affine``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import SimpleITK

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _sitk():
    """SimpleITK, imported on first use: most volumes share one grid, and the import costs a command ~0.3 s."""
    return importlib.import_module("SimpleITK")


def sitk_geometry(affine: np.ndarray) -> tuple[list[float], list[float], list[float]]:
    """(spacing, origin, row-major direction) of a 4×4 RAS affine, in SimpleITK's LPS convention."""
    lps = _RAS_TO_LPS @ np.asarray(affine, dtype=np.float64)
    matrix = lps[:3, :3]
    spacing = np.linalg.norm(matrix, axis=0)
    direction = matrix / spacing  # column c = direction of index axis c
    return spacing.tolist(), lps[:3, 3].tolist(), direction.ravel().tolist()


def to_sitk(array: np.ndarray, affine: np.ndarray) -> SimpleITK.Image:
    """A SimpleITK image of a 3D nibabel-ordered array (i, j, k) with its RAS ``affine``."""
    image = _sitk().GetImageFromArray(np.ascontiguousarray(np.asarray(array).transpose(2, 1, 0)))
    spacing, origin, direction = sitk_geometry(affine)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image


def from_sitk(image: SimpleITK.Image) -> np.ndarray:
    """The nibabel-ordered (i, j, k) array of a 3D SimpleITK image."""
    return _sitk().GetArrayFromImage(image).transpose(2, 1, 0)


def same_grid(shape_a: tuple[int, ...], affine_a: np.ndarray, shape_b: tuple[int, ...], affine_b: np.ndarray,
              atol_mm: float = 1e-3) -> bool:
    """Whether two grids have the same shape and, within ``atol_mm``, the same affine."""
    return tuple(shape_a) == tuple(shape_b) and np.allclose(affine_a, affine_b, rtol=0.0, atol=atol_mm)


def box_affine(affine: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
    """The affine of the sub-grid ``box`` (slices of the voxel axes) of the grid ``affine``: the inverse of
    :func:`sub_grid_box`."""
    moved = np.array(affine, dtype=np.float64)
    moved[:3, 3] = affine[:3, :3] @ np.array([s.start for s in box], dtype=np.float64) + affine[:3, 3]
    return moved


def sub_grid_box(shape: tuple[int, ...], affine: np.ndarray, ref_shape: tuple[int, ...], ref_affine: np.ndarray,
                 atol_mm: float = 1e-3) -> tuple[slice, ...] | None:
    """The reference voxels a grid covers when it is a box of the reference grid (same axes and spacing, shifted
    by whole voxels, within ``atol_mm``): slices of the reference's voxel axes; else None."""
    shape, ref_shape = tuple(shape[:3]), tuple(ref_shape[:3])
    if len(shape) != len(ref_shape) or not np.allclose(affine[:3, :3], ref_affine[:3, :3], rtol=0.0, atol=atol_mm):
        return None
    first = np.linalg.solve(ref_affine[:3, :3], affine[:3, 3] - ref_affine[:3, 3])
    whole = np.rint(first)
    if np.abs(ref_affine[:3, :3] @ (first - whole)).max() > atol_mm:
        return None
    if any(f < 0 or f + n > m for f, n, m in zip(whole, shape, ref_shape)):
        return None
    return tuple(slice(int(f), int(f) + n) for f, n in zip(whole, shape))


def resample_to_grid(array: np.ndarray, affine: np.ndarray, ref_shape: tuple[int, int, int],
                     ref_affine: np.ndarray, *, nearest: bool = False) -> np.ndarray:
    """``array`` (on the grid ``affine``) resampled onto the grid (``ref_shape``, ``ref_affine``).

    Linear interpolation, or nearest neighbour for label maps. Reference voxels whose centre lies
    outside the moving image are NaN, so the caller can see (and fill) the part with no data.
    Returns float32 of shape ``ref_shape``, axis order as the reference.
    """
    sitk = _sitk()
    moving = to_sitk(np.asarray(array, dtype=np.float32), affine)
    spacing, origin, direction = sitk_geometry(ref_affine)
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize([int(n) for n in ref_shape])
    resampler.SetOutputSpacing(spacing)
    resampler.SetOutputOrigin(origin)
    resampler.SetOutputDirection(direction)
    resampler.SetInterpolator(sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear)
    resampler.SetDefaultPixelValue(float("nan"))
    resampler.SetOutputPixelType(sitk.sitkFloat32)
    return from_sitk(resampler.Execute(moving))
