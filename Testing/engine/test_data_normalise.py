"""Foreground detection and [0, 1] normalisation across the three storage conventions."""

import nibabel as nib
import numpy as np
import pytest

from DiffSegExtension.data.loading import load_case
from DiffSegExtension.data.normalise import foreground_mask, normalise, otsu_threshold
from DiffSegExtension.errors import DiffSegInputError


@pytest.fixture(scope="module")
def raw_flair(shared_data) -> np.ndarray:
    """BraTS 2018 FLAIR, raw scanner values, background exactly 0."""
    return load_case(shared_data / "brats2018_flair_t1" / "Brats18_CBICA_ATV_1", ["flair"]).images["flair"]


@pytest.fixture(scope="module")
def zscored(shared_data) -> tuple[np.ndarray, np.ndarray]:
    """BraTS 2015 FLAIR (z-scored, constant negative background) and its brain mask."""
    folder = shared_data / "brats2015_flair_t1ce" / "brats_2013_pat0004_1"
    flair = load_case(folder, ["flair"]).images["flair"]
    return flair, np.asarray(nib.load(str(folder / "brats_2013_pat0004_1_brainmask.nii.gz")).dataobj) > 0.5


@pytest.fixture(scope="module")
def seed_slice(shared_data) -> np.ndarray:
    folder = shared_data / "brats2020_slices_seed_layout" / "training" / "000002"
    return load_case(folder, ["flair"], allow_2d=True).images["flair"]


def test_raw_background_zero(raw_flair):
    assert np.array_equal(foreground_mask(raw_flair), raw_flair > 0)


def test_zscored_negative_background_matches_the_brain_mask(zscored):
    flair, brain = zscored
    assert flair.min() < -3.0
    mask = foreground_mask(flair)
    assert np.array_equal(mask, flair > flair.min())
    assert (mask == brain).mean() > 0.999


def test_unit_scaled_seed_slice(seed_slice):
    assert np.array_equal(foreground_mask(seed_slice), seed_slice > 0)


def test_the_three_conventions_normalise_alike(raw_flair, zscored, seed_slice):
    medians = []
    for volume in (raw_flair, zscored[0], seed_slice):
        mask = foreground_mask(volume)
        out = normalise(volume, mask)
        assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == 1.0
        assert np.all(out[~mask] == 0.0)
        medians.append(float(np.median(out[mask])))
    assert all(0.2 < m < 0.65 for m in medians), medians


def test_normalisation_is_invariant_to_the_storage_convention(raw_flair):
    """The same brain stored raw, z-scored (negative background) or min–max scaled normalises identically."""
    volume = raw_flair[60:180, 50:200, 40:110]
    brain = volume > 0
    mean, std = volume[brain].mean(), volume[brain].std()
    zscored = np.where(brain, (volume - mean) / std, -mean / std).astype(np.float32)
    scaled = (volume / volume.max()).astype(np.float32)
    reference = normalise(volume, foreground_mask(volume))
    for other in (zscored, scaled):
        mask = foreground_mask(other)
        assert np.array_equal(mask, brain)
        assert np.abs(normalise(other, mask) - reference).max() < 1e-4


def test_zero_background_with_negative_brain_values():
    rng = np.random.default_rng(0)
    volume = np.zeros((40, 40, 20), dtype=np.float32)
    volume[10:30, 8:32, 4:16] = rng.normal(0.0, 1.0, size=(20, 24, 12))  # z-scored brain, background then set to 0
    assert np.array_equal(foreground_mask(volume), volume != 0)


def test_noisy_unstripped_image_falls_back_to_otsu():
    rng = np.random.default_rng(0)
    shape = (48, 48, 24)
    grid = np.indices(shape) - np.array([24, 24, 12])[:, None, None, None]
    head = ((grid / np.array([16, 18, 9])[:, None, None, None]) ** 2).sum(axis=0) < 1.0
    signal = np.where(head, 600.0, 0.0)
    volume = np.hypot(signal + rng.normal(0, 25, shape), rng.normal(0, 25, shape)).astype(np.float32)
    assert (volume == volume.min()).sum() == 1  # no constant background
    mask = foreground_mask(volume)
    assert (mask == head).mean() > 0.995
    assert 50 < otsu_threshold(volume) < 550


def test_percentiles_clip_outliers():
    volume = np.zeros((10, 10, 10), dtype=np.float32)
    volume[2:8, 2:8, 2:8] = np.linspace(1.0, 100.0, 216).reshape(6, 6, 6)
    volume[5, 5, 5] = 1e6  # one hot voxel must not squash the rest
    out = normalise(volume, volume > 0, (1.0, 99.0))
    assert np.median(out[volume > 0]) == pytest.approx(0.5, abs=0.03)
    assert out[5, 5, 5] == 1.0


@pytest.mark.parametrize("mask, percentiles, message", [
    (np.zeros((4, 4, 4), bool), (1.0, 99.0), "no foreground"),
    (np.ones((4, 4, 4), bool), (99.0, 1.0), r"clip percentiles \(99.0, 1.0\) are invalid"),
    (np.ones((4, 4), bool), (1.0, 99.0), "mask shape"),
])
def test_bad_arguments(mask, percentiles, message):
    with pytest.raises(DiffSegInputError, match=message):
        normalise(np.arange(64, dtype=np.float32).reshape(4, 4, 4), mask, percentiles)


def test_constant_foreground_is_an_error():
    volume = np.zeros((6, 6, 6), dtype=np.float32)
    volume[1:5, 1:5, 1:5] = 3.0
    with pytest.raises(DiffSegInputError, match="constant"):
        normalise(volume, foreground_mask(volume))


def test_integer_noise_with_some_exact_zeros_is_not_a_constant_background():
    rng = np.random.default_rng(1)
    shape = (48, 48, 24)
    grid = np.indices(shape) - np.array([24, 24, 12])[:, None, None, None]
    head = ((grid / np.array([16, 18, 9])[:, None, None, None]) ** 2).sum(axis=0) < 1.0
    volume = np.rint(np.hypot(np.where(head, 300.0, 0.0) + rng.normal(0, 1.0, shape), rng.normal(0, 1.0, shape)))
    assert (volume == 0).mean() > 0.05  # scattered exact zeros in the air ...
    assert (foreground_mask(volume.astype(np.float32)) == head).mean() > 0.995  # ... yet the air is background
