"""The component rule: whole-tumour mask components the ensemble does not back leave the masks, not the maps."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from DiffSegExtension.cli import main
from DiffSegExtension.components import drop_unlikely_components
from DiffSegExtension.data.phantom import make_phantom, write_phantom_case
from DiffSegExtension.inference.segment import SegmentOptions
from DiffSegExtension.errors import DiffSegInputError


def two_blobs():
    """(R=3, 12, 12, 6) nested masks and the WT probability: a backed blob (mean 0.9) with a core, a weak one (0.6)."""
    p = np.zeros((12, 12, 6), np.float32)
    p[1:5, 1:5, 1:4] = 0.9
    p[8:11, 8:11, 2:5] = 0.6
    p[8, 8, 2] = 1.0  # one voxel where every member agrees does not save the weak blob
    mask = np.zeros((3, *p.shape), np.uint8)
    mask[0] = p >= 0.5
    mask[1:, 2:4, 2:4, 2] = 1
    mask[1:, 9, 9, 3] = 1  # a core inside the weak blob too
    return mask, p


def test_weak_components_leave_every_region_and_backed_ones_stay():
    mask, p = two_blobs()
    before = mask.copy()
    assert drop_unlikely_components(mask, p, 0.7) == 1
    assert not mask[:, 8:11, 8:11, 2:5].any(), "the weak blob and the core inside it are gone from every region"
    np.testing.assert_array_equal(mask[:, :6, :6], before[:, :6, :6])
    assert p[8, 8, 2] == 1.0 and (p[9, 9, 3] == 0.6), "the probability is not touched"


def test_threshold_zero_keeps_everything_and_the_mean_decides_at_the_boundary():
    mask, p = two_blobs()
    weak_mean = p[8:11, 8:11, 2:5].mean()
    for min_mean, removed in ((0.0, 0), (weak_mean - 1e-4, 0), (weak_mean + 1e-4, 1), (0.95, 2)):
        m = mask.copy()
        assert drop_unlikely_components(m, p, min_mean) == removed, min_mean
        assert ndimage.label(m[0])[1] == 2 - removed


def test_a_component_holding_a_kept_voxel_stays_whatever_its_mean():
    mask, p = two_blobs()
    keep = np.zeros(p.shape, bool)
    keep[10, 10, 4] = True
    assert drop_unlikely_components(mask, p, 0.7, keep=keep) == 0
    assert mask[0, 8:11, 8:11, 2:5].all()


def test_options_refuse_a_threshold_outside_zero_one():
    with pytest.raises(DiffSegInputError, match="min-component-probability"):
        SegmentOptions(min_component_probability=1.5).check(1000)


@pytest.fixture(scope="module")
def oblique_case(tmp_path_factory):
    phantom = make_phantom(11, shape=(56, 48, 20), spacing=(0.9, 1.2, 2.0), oblique=True)
    return write_phantom_case(tmp_path_factory.mktemp("oblique"), "oblique", phantom)


def test_segment_applies_the_rule_to_the_masks_only_and_records_it(tmp_path, tiny_run, oblique_case):
    runs = {}
    for rule in ("0", "1"):
        out = tmp_path / f"rule{rule}"
        assert main(["segment", "--model", str(tiny_run), "--input", str(oblique_case), "--out", str(out),
                     "--members", "3", "--steps", "2", "--progress", "none", "--min-component-probability", rule]) == 0
        runs[rule] = {name: np.asarray(nib.load(out / f"{name}.nii.gz").dataobj)
                      for name in ("segmentation", "probability", "uncertainty")}
        runs[rule]["options"] = json.loads((out / "summary.json").read_text())["options"]
    loose, strict = runs["0"], runs["1"]
    assert (loose["options"]["min_component_probability"], strict["options"]["min_component_probability"]) == (0, 1)
    for name in ("probability", "uncertainty"):
        np.testing.assert_array_equal(loose[name], strict[name])
    labels, count = ndimage.label(loose["segmentation"] > 0)
    assert count >= 1
    means = ndimage.mean(loose["probability"], labels, np.arange(1, count + 1))
    survivors = np.isin(labels, 1 + np.flatnonzero(means >= 1.0))
    assert survivors.sum() < (loose["segmentation"] > 0).sum(), "the rule removed something"
    np.testing.assert_array_equal(strict["segmentation"] > 0, survivors,
                                  "exactly the components every member agrees on all over survive P = 1")
