"""BraTS label maps ↔ nested region masks, and the label map a region model writes."""

import numpy as np
import pytest

from DiffSegExtension.errors import DiffSegInputError
from DiffSegExtension.regions import (annotated_regions, check_regions, label_map_from_regions, nest, output_labels,
                                      region_masks)


def test_brats_2018_labels_give_nested_regions():
    labels = np.array([0, 1, 2, 4, 2, 0], dtype=np.uint8)
    wt, tc, et = region_masks(labels)
    assert wt.tolist() == [0, 1, 1, 1, 1, 0]
    assert tc.tolist() == [0, 1, 0, 1, 0, 0]
    assert et.tolist() == [0, 0, 0, 1, 0, 0]
    assert annotated_regions(labels) == ("wt", "tc", "et")


def test_2013_scheme_counts_label_3_as_core_and_2021_scheme_as_enhancing():
    brats2013 = np.array([0, 1, 2, 3, 4], dtype=np.uint8)  # 3 = non-enhancing core, 4 present
    assert region_masks(brats2013, ("wt", "tc", "et")).tolist() == [[0, 1, 1, 1, 1], [0, 1, 0, 1, 1], [0, 0, 0, 0, 1]]
    brats2021 = np.array([0, 1, 2, 3], dtype=np.uint8)  # 3 = enhancing, no 4
    assert region_masks(brats2021, ("wt", "tc", "et")).tolist() == [[0, 1, 1, 1], [0, 1, 0, 1], [0, 0, 0, 1]]


def test_binary_label_annotates_the_whole_tumour_only():
    binary = np.array([0, 1, 1, 0], dtype=np.uint8)
    assert annotated_regions(binary) == ("wt",)
    wt, tc, et = region_masks(binary)
    assert wt.tolist() == [0, 1, 1, 0] and not tc.any() and not et.any()


def test_nesting_is_a_union_upwards_and_the_label_map_round_trips():
    masks = np.array([[1, 1, 0, 0, 0],   # WT
                      [1, 0, 1, 0, 0],   # TC (the third voxel is outside WT)
                      [0, 0, 0, 1, 0]],  # ET (outside both)
                     dtype=np.uint8)
    nested = nest(masks)
    assert nested.tolist() == [[1, 1, 1, 1, 0], [1, 0, 1, 1, 0], [0, 0, 0, 1, 0]]
    labels = label_map_from_regions(masks, ("wt", "tc", "et"))
    assert labels.tolist() == [1, 2, 1, 4, 0]
    assert np.array_equal(region_masks(labels), nested)
    assert label_map_from_regions(masks[:1], ("wt",)).tolist() == [1, 1, 0, 0, 0]


def test_random_label_maps_round_trip():
    rng = np.random.default_rng(0)
    labels = rng.choice(np.array([0, 1, 2, 4], dtype=np.uint8), size=(7, 8, 9))
    assert np.array_equal(label_map_from_regions(region_masks(labels), ("wt", "tc", "et")), labels)


def test_output_labels_and_region_checks():
    assert output_labels(("wt",)) == {1: "tumour"}
    assert sorted(output_labels(("wt", "tc", "et"))) == [1, 2, 4]
    for bad in [(), ("tc",), ("wt", "et", "tc"), ("wt", "wt"), ("wt", "xx")]:
        with pytest.raises(DiffSegInputError, match="regions"):
            check_regions(bad)
