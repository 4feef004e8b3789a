"""Cropped outputs (``--crop-outputs``): a box of the input grid that keeps every voxel's place in space."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from DiffSegExtension.data.resample import box_affine, sub_grid_box
from DiffSegExtension.inference.outputs import content_box

SHAPE = (20, 24, 16)


def test_a_box_of_an_oblique_grid_is_found_where_it_lies(oblique_affine):
    affine = oblique_affine()
    box = (slice(3, 11), slice(0, 24), slice(5, 6))
    moved = box_affine(affine, box)
    assert sub_grid_box((8, 24, 1), moved, SHAPE, affine) == box
    first, last = np.array([3, 0, 5, 1.0]), np.array([10, 23, 5, 1.0])
    assert np.allclose(moved @ [0, 0, 0, 1], affine @ first) and np.allclose(moved @ [7, 23, 0, 1], affine @ last)
    assert sub_grid_box(SHAPE, affine, SHAPE, affine) == tuple(slice(0, n) for n in SHAPE)


def test_other_grids_are_not_boxes(oblique_affine):
    affine = oblique_affine()
    half_voxel = affine.copy()
    half_voxel[:3, 3] += affine[:3, :3] @ [0.5, 0, 0]
    rotated = oblique_affine(degrees=(18.0, -12.0))
    finer = oblique_affine(spacing=(0.45, 1.1, 2.5))
    assert sub_grid_box((4, 4, 4), half_voxel, SHAPE, affine) is None
    assert sub_grid_box((4, 4, 4), rotated, SHAPE, affine) is None
    assert sub_grid_box((4, 4, 4), finer, SHAPE, affine) is None
    assert sub_grid_box((4, 4, 4), box_affine(affine, (slice(18, 22), slice(0, 4), slice(0, 4))), SHAPE, affine) is None
    assert sub_grid_box((4, 4, 4), box_affine(affine, (slice(-1, 3), slice(0, 4), slice(0, 4))), SHAPE, affine) is None


def test_the_content_box_holds_every_non_zero_voxel_and_no_more():
    probability = np.zeros((3, *SHAPE), dtype=np.float32)
    label = np.zeros(SHAPE, dtype=np.uint8)
    probability[2, 4, 7, 9] = 0.2
    label[12, 7, 3] = 4
    assert content_box(SimpleNamespace(probability=probability, label_map=label)) == (slice(4, 13), slice(7, 8),
                                                                                       slice(3, 10))
    empty = SimpleNamespace(probability=np.zeros_like(probability), label_map=np.zeros_like(label))
    assert content_box(empty) == (slice(0, 1),) * 3
