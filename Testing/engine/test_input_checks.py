"""Suspicious-input warnings (not skull-stripped, not co-registered) on synthetic and real cases."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from DiffSegExtension.data import input_checks
from DiffSegExtension.data.input_checks import input_warnings
from DiffSegExtension.data.loading import load_case
from DiffSegExtension.data.phantom import make_phantom, write_phantom_case

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
MODALITIES = ("flair", "t1", "t1ce", "t2")


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(2, shape=(80, 80, 48))


def _with_skull_and_air(image: np.ndarray, seed: int = 0) -> np.ndarray:
    """The brain inside a bright skull/scalp shell, with Rician-like noise in the air around it."""
    rng = np.random.default_rng(seed)
    brain = image > 0
    grown = brain.copy()
    for axis in range(3):
        for shift in (-3, -2, -1, 1, 2, 3):
            grown |= np.roll(brain, shift, axis=axis)
    out = np.where(grown & ~brain, 2.5 * image.max(), image)
    return np.where(out > 0, out, np.abs(rng.normal(0, 0.02 * image.max(), image.shape))).astype(np.float32)


def test_skull_stripped_coregistered_phantom_gives_no_warning(phantom):
    assert input_warnings(phantom.images, phantom.affine) == []


def test_noisy_air_and_skull_are_flagged_as_not_skull_stripped(phantom):
    images = dict(phantom.images, t1=_with_skull_and_air(phantom.images["t1"]))
    warnings = input_warnings(images, phantom.affine)
    assert len(warnings) == 1, warnings  # and no co-registration verdict on an unstripped image
    assert warnings[0].startswith("T1 does not look skull-stripped: only")
    assert "strip the skull first" in warnings[0] and "\n" not in warnings[0]


def test_zero_background_whole_head_is_flagged_by_its_volume():
    """Air set to 0 but skull kept: the foreground is a 4 l head, not a 1.5 l brain."""
    shape, spacing = (100, 110, 100), 2.0
    grid = np.indices(shape).astype(np.float32)
    centre = (np.array(shape) - 1)[:, None, None, None] / 2
    radii = np.array([90.0, 110.0, 100.0])[:, None, None, None] / spacing
    head = (((grid - centre) / radii) ** 2).sum(axis=0) <= 1.0
    image = np.where(head, 500.0, 0.0).astype(np.float32)
    affine = np.diag([spacing, spacing, spacing, 1.0])
    warnings = input_warnings({"flair": image}, affine, names={"flair": "head.nii.gz"})
    assert len(warnings) == 1 and "head.nii.gz does not look skull-stripped: its non-background part is" in warnings[0]
    volume_ml = head.sum() * spacing ** 3 / 1000
    assert f"{volume_ml:.0f} ml" in warnings[0] and volume_ml > input_checks.MAX_BRAIN_ML


def test_a_shifted_sequence_is_flagged_as_not_coregistered(phantom):
    images = dict(phantom.images, t2=np.roll(phantom.images["t2"], 8, axis=0))
    warnings = input_warnings(images, phantom.affine)
    assert len(warnings) == 1 and warnings[0].startswith("T2 covers only") and "not co-registered" in warnings[0]
    assert "register T2 to FLAIR first" in warnings[0]


def test_a_larger_field_of_view_than_the_reference_is_fine(phantom):
    """The reference (FLAIR) covers fewer slices than T1: every FLAIR brain voxel is still covered."""
    flair = phantom.images["flair"].copy()
    flair[:, :, :12] = 0
    assert input_warnings(dict(phantom.images, flair=flair), phantom.affine) == []


def test_an_empty_sequence_has_no_outline_to_compare(phantom):
    """A sequence filled with zeros (e.g. a missing one) is not called misregistered."""
    images = dict(phantom.images, t1ce=np.zeros_like(phantom.images["t1ce"]))
    assert input_warnings(images, phantom.affine) == []


def test_misregistered_nifti_files_are_flagged_after_loading(tmp_path, phantom):
    """The CLI's path: files on disk, T1 with an affine 12 mm off, resampled by load_case."""
    case = write_phantom_case(tmp_path, "case", phantom)
    t1 = nib.load(str(case / "case_t1.nii.gz"))
    moved = t1.affine.copy()
    moved[:3, 3] += [12.0, 0.0, 0.0]
    nib.save(nib.Nifti1Image(np.asarray(t1.dataobj), moved), str(case / "case_t1.nii.gz"))
    loaded = load_case(case, MODALITIES)
    warnings = input_warnings(loaded.images, loaded.affine)
    assert [w.split(" ")[0] for w in warnings] == ["T1"] and "covers only" in warnings[0]


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data")
def test_real_brats_cases_give_no_warning():
    cases = sorted((SHARED / "brats2018_4mod").glob("Brats18_*"))[:4]
    assert cases
    for case in cases:
        loaded = load_case(case, MODALITIES)
        assert input_warnings(loaded.images, loaded.affine) == [], case.name
