"""Shared fixtures of the engine tests: the shared real data and oblique affines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from testing_utils import SHARED_DATA


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module: on 2 shared cores a second thread waits at every barrier for a busy core
    (≈40× slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


def _rotation(axis: int, degrees: float) -> np.ndarray:
    a, b = [i for i in range(3) if i != axis]
    c, s = np.cos(np.deg2rad(degrees)), np.sin(np.deg2rad(degrees))
    r = np.eye(3)
    r[a, a] = r[b, b] = c
    r[a, b], r[b, a] = -s, s
    return r


@pytest.fixture(scope="session")
def oblique_affine():
    """Factory: a 4×4 RAS affine rotated about two world axes, with given spacing, axis order and flips.

    ``axes[i]`` is the world axis (0 R, 1 A, 2 S) voxel axis i runs along before rotation; ``flips[i]``
    its sign. The voxel ``centre`` maps to world ``origin`` (mm).
    """
    def make(spacing=(0.9, 1.1, 2.5), degrees=(17.0, -12.0), rot_axes=(0, 1), axes=(0, 1, 2), flips=(1, 1, 1),
             centre=(0.0, 0.0, 0.0), origin=(12.0, -20.0, 31.0)) -> np.ndarray:
        base = np.zeros((3, 3))
        for i, (axis, flip) in enumerate(zip(axes, flips)):
            base[axis, i] = flip * spacing[i]
        linear = _rotation(rot_axes[1], degrees[1]) @ _rotation(rot_axes[0], degrees[0]) @ base
        affine = np.eye(4)
        affine[:3, :3] = linear
        affine[:3, 3] = np.asarray(origin) - linear @ np.asarray(centre, dtype=float)
        return affine
    return make
