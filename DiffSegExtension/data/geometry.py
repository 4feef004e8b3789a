"""Exact reorientation of a voxel grid so that slices are axial (no resampling).

nibabel's orientation tools find, for each voxel axis, the closest world (RAS) axis; the frame
permutes and flips the voxel axes so they point along the target orientation's axes (default
``LPS``: canonical axis 0 → left, 1 → posterior, 2 → superior). Canonical axis 2 is therefore the
superior–inferior axis, and a canonical slice ``array[:, :, k]`` is (close to) axial.
"""

from __future__ import annotations

import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

from DiffSegExtension.errors import DiffSegInputError

_PAIRS = ("LR", "PA", "IS")


def _check_orientation(code: str) -> str:
    code = code.upper()
    axes = sorted(next((i for i, pair in enumerate(_PAIRS) if c in pair), -1) for c in code)
    if len(code) != 3 or axes != [0, 1, 2]:
        raise DiffSegInputError(f"orientation '{code}' is invalid: give three letters, one from each of "
                                "L/R, P/A, I/S (e.g. LPS or RAS)")
    if code[2] not in "IS":
        raise DiffSegInputError(f"orientation '{code}' must end with S or I: slices are taken along the "
                                "third (superior–inferior) axis")
    return code


class CanonicalFrame:
    """Maps arrays between a source voxel grid (``affine``, ``shape``) and its canonical orientation.

    ``to_canonical``/``from_canonical`` only permute and flip axes, so they are exact inverses.
    """

    def __init__(self, affine: np.ndarray, shape: tuple[int, int, int], orientation: str = "LPS"):
        affine = np.asarray(affine, dtype=np.float64)
        if affine.shape != (4, 4) or len(shape) != 3:
            raise DiffSegInputError(f"a canonical frame needs a 4×4 affine and a 3D shape, got {affine.shape} "
                                    f"and {tuple(shape)}")
        self.orientation = _check_orientation(orientation)
        self.affine = affine
        self.shape = tuple(int(n) for n in shape)
        source = io_orientation(affine)
        target = axcodes2ornt(tuple(self.orientation))
        #: Row i: (canonical axis, flip) of source voxel axis i.
        self._forward = ornt_transform(source, target)
        self._inverse = ornt_transform(target, source)
        self._canonical_affine = affine @ inv_ornt_aff(self._forward, self.shape)

    @property
    def canonical_shape(self) -> tuple[int, int, int]:
        shape = [0, 0, 0]
        for axis, (new_axis, _) in enumerate(self._forward):
            shape[int(new_axis)] = self.shape[axis]
        return tuple(shape)

    @property
    def canonical_affine(self) -> np.ndarray:
        """4×4 canonical voxel → RAS mm transform (same world positions as the source affine)."""
        return self._canonical_affine.copy()

    @property
    def canonical_spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along canonical axes 0, 1, 2."""
        return tuple(float(s) for s in np.linalg.norm(self._canonical_affine[:3, :3], axis=0))

    @property
    def slice_axis(self) -> int:
        """The source voxel axis that becomes canonical axis 2 (superior–inferior)."""
        return int(np.flatnonzero(self._forward[:, 0] == 2)[0])

    def canonical_slice_to_source(self, k: int) -> int:
        """Source index along :attr:`slice_axis` of canonical slice ``k``."""
        n = self.shape[self.slice_axis]
        if not 0 <= k < n:
            raise IndexError(f"canonical slice {k} outside [0, {n})")
        flipped = self._forward[self.slice_axis, 1] < 0
        return n - 1 - k if flipped else k

    def to_canonical(self, array: np.ndarray) -> np.ndarray:
        """Source-ordered array (shape ``shape``, optional trailing axes) → canonical order (contiguous copy)."""
        self._check(array, self.shape, "source")
        return np.ascontiguousarray(apply_orientation(np.asarray(array), self._forward))

    def from_canonical(self, array: np.ndarray) -> np.ndarray:
        """Canonical-ordered array → source order; exact inverse of :meth:`to_canonical`."""
        self._check(array, self.canonical_shape, "canonical")
        return np.ascontiguousarray(apply_orientation(np.asarray(array), self._inverse))

    def slab_from_canonical(self, array: np.ndarray) -> np.ndarray:
        """Canonical-ordered slab (n0, n1, K): K canonical slices in ascending order → source order, its
        :attr:`slice_axis` holding the same slices in ascending source order (the slab of :meth:`from_canonical`;
        a view of ``array``, not a copy)."""
        if tuple(np.shape(array)[:2]) != self.canonical_shape[:2]:
            raise DiffSegInputError(f"slab of shape {np.shape(array)} does not match the canonical slices "
                                    f"{self.canonical_shape[:2]}")
        return apply_orientation(np.asarray(array), self._inverse)

    @staticmethod
    def _check(array: np.ndarray, shape: tuple[int, ...], which: str) -> None:
        if tuple(np.shape(array)[:3]) != shape:
            raise DiffSegInputError(f"array of shape {np.shape(array)} does not match the {which} grid {shape}")

    def __repr__(self) -> str:
        return (f"CanonicalFrame(shape={self.shape}, orientation='{self.orientation}', "
                f"slice_axis={self.slice_axis}, canonical_shape={self.canonical_shape})")
