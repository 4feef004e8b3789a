"""Loading cases: the real data layouts, physical-space resampling, and every bad-input error."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from DiffSegExtension.data.loading import load_case
from DiffSegExtension.data.resample import to_sitk
from DiffSegExtension.errors import DiffSegInputError

FOUR = ["flair", "t1", "t1ce", "t2"]


def save(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine), str(path))
    return path


def world_points(shape, affine) -> np.ndarray:
    """(3, *shape) RAS mm of every voxel centre."""
    index = np.indices(shape, dtype=float).reshape(3, -1)
    return (affine[:3, :3] @ index + affine[:3, 3:4]).reshape(3, *shape)


def world_centroid(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return affine[:3, :3] @ np.argwhere(mask).mean(axis=0) + affine[:3, 3]


# --- real data -------------------------------------------------------------------------------------

def test_brats2018_raw_flair_t1(shared_data):
    folder = shared_data / "brats2018_flair_t1" / "Brats18_CBICA_AAB_1"
    case = load_case(folder, ["flair", "t1"], with_label=True)
    seg = np.asarray(nib.load(str(folder / "Brats18_CBICA_AAB_1_seg.nii.gz")).dataobj)
    assert case.name == "Brats18_CBICA_AAB_1"
    assert case.shape == (240, 240, 155) and list(case.images) == ["flair", "t1"]
    assert all(v.dtype == np.float32 and v.shape == case.shape for v in case.images.values())
    assert case.affine.dtype == np.float64 and case.affine.shape == (4, 4)
    assert nib.aff2axcodes(case.affine) == ("L", "P", "S")
    assert case.label.dtype == np.uint8 and set(np.unique(case.label)) == {0, 1}
    assert int(case.label.sum()) == int((seg > 0).sum())


def test_brats2015_zscored_multilabel_becomes_whole_tumour(shared_data):
    folder = shared_data / "brats2015_flair_t1ce" / "brats_2013_pat0003_1"
    case = load_case(folder, ["t1gd", "FLAIR"], with_label=True)  # aliases, any case; reference = t1ce
    seg = np.asarray(nib.load(str(folder / "brats_2013_pat0003_1_seg.nii.gz")).dataobj)
    assert list(case.images) == ["t1ce", "flair"]
    assert len(np.unique(seg)) > 2 and set(np.unique(case.label)) == {0, 1}
    assert int(case.label.sum()) == int((seg > 0).sum())
    assert case.images["flair"].min() < -1.0  # z-scored: negative background kept as stored


def test_msd_patch_four_modalities(shared_data):
    case = load_case(shared_data / "msd_patches_4mod" / "MSD_BRATS_009_patch01", FOUR, with_label=True)
    assert case.shape == (160, 160, 16) and list(case.images) == FOUR
    assert np.allclose(case.affine[:3, 3], [73.0, 11.0, 63.0])  # the patch offset is kept
    assert case.label.any()


def test_seed_2d_slices_need_allow_2d(shared_data):
    folder = shared_data / "brats2020_slices_seed_layout" / "training" / "000003"
    with pytest.raises(DiffSegInputError, match=r"T1 file .*is a 2D image \(240×240\); give a 3D volume"):
        load_case(folder, ["t1", "flair"])
    case = load_case(folder, ["t1", "t1ce", "t2", "flair"], with_label=True, allow_2d=True)
    assert case.shape == (240, 240, 1) and case.reference.shape == (240, 240, 1)
    assert case.images["t2"].shape == (240, 240, 1) and case.label.shape == (240, 240, 1)
    assert np.array_equal(case.affine, np.eye(4)) and case.label.any()


def test_explicit_file_mapping(shared_data):
    folder = shared_data / "msd_patches_4mod" / "MSD_BRATS_009_patch02"
    files = {"T2": folder / "MSD_BRATS_009_patch02_t2.nii.gz", "label": folder / "MSD_BRATS_009_patch02_seg.nii.gz"}
    case = load_case(files, ["t2"], with_label=True)
    assert case.name == "MSD_BRATS_009_patch02" and list(case.images) == ["t2"] and case.label is not None


# --- geometry ---------------------------------------------------------------------------------------

def test_sitk_image_has_the_nifti_geometry_in_lps(oblique_affine):
    affine = oblique_affine(axes=(1, 0, 2), flips=(-1, 1, -1))
    image = to_sitk(np.zeros((5, 6, 7), dtype=np.float32), affine)
    assert image.GetSize() == (5, 6, 7)
    for index in [(0, 0, 0), (4, 1, 3), (2, 5, 6)]:
        ras = affine @ [*index, 1.0]
        assert np.allclose(image.TransformIndexToPhysicalPoint(index), [-ras[0], -ras[1], ras[2]], atol=1e-6)


def test_other_grid_is_resampled_in_physical_space(tmp_path, oblique_affine):
    """A sharp object seen on two different oblique grids lands at the same world place."""
    centre, semi = np.array([14.0, -26.0, 27.0]), np.array([9.0, 6.0, 11.0])  # off the grid centres
    ref_shape, ref_affine = (44, 40, 20), oblique_affine(spacing=(0.9, 1.1, 2.5), centre=(21.5, 19.5, 9.5))
    mov_shape = (30, 52, 34)
    mov_affine = oblique_affine(spacing=(1.4, 0.8, 1.3), degrees=(-20.0, 9.0), rot_axes=(2, 0), axes=(1, 0, 2),
                                flips=(-1, 1, -1), centre=(15.0, 26.0, 17.0), origin=(16.0, -22.0, 29.0))

    def object_on(shape, affine):
        return (((world_points(shape, affine) - centre[:, None, None, None]) / semi[:, None, None, None]) ** 2
                ).sum(axis=0) < 1.0

    ref_object, mov_object = object_on(ref_shape, ref_affine), object_on(mov_shape, mov_affine)
    folder = tmp_path / "case"
    save(folder / "c_flair.nii.gz", (100.0 + 400.0 * ref_object).astype(np.float32), ref_affine)
    save(folder / "c_t1.nii.gz", (100.0 + 400.0 * mov_object).astype(np.float32), mov_affine)
    save(folder / "c_seg.nii.gz", (2 * mov_object).astype(np.uint8), mov_affine)

    case = load_case(folder, ["flair", "t1"], with_label=True)
    moved = case.images["t1"] > 300.0
    assert case.images["t1"].shape == ref_shape
    assert np.linalg.norm(world_centroid(ref_object, ref_affine) - centre) < 0.5
    assert np.linalg.norm(world_centroid(moved, ref_affine) - centre) < 0.9  # within a voxel (0.9–2.5 mm)
    assert np.linalg.norm(world_centroid(case.label > 0, ref_affine) - centre) < 0.9
    dice = 2 * (moved & ref_object).sum() / (moved.sum() + ref_object.sum())
    assert dice > 0.9
    assert set(np.unique(case.label)) == {0, 1}  # nearest neighbour: no blended labels


# --- bad input --------------------------------------------------------------------------------------

@pytest.fixture
def good_volume() -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 100, size=(12, 10, 8)).astype(np.float32)


@pytest.mark.parametrize("shape, message", [
    ((12, 10, 8, 2), r"FLAIR file .*c_flair.nii.gz is 4D \(12×10×8×2\); give a single 3D volume"),
    ((12, 10), r"FLAIR file .* is a 2D image \(12×10\); give a 3D volume"),
    ((12, 1, 8), r"FLAIR file .* is a 2D image \(12×1×8\)"),
])
def test_wrong_dimensionality(tmp_path, shape, message):
    save(tmp_path / "c" / "c_flair.nii.gz", np.random.default_rng(1).uniform(size=shape).astype(np.float32))
    with pytest.raises(DiffSegInputError, match=message):
        load_case(tmp_path / "c", ["flair"])


def test_trailing_singleton_axes_are_squeezed(tmp_path, good_volume):
    save(tmp_path / "c" / "c_flair.nii.gz", good_volume[..., None, None])
    case = load_case(tmp_path / "c", ["flair"])
    assert case.shape == (12, 10, 8) and np.array_equal(case.images["flair"], good_volume)


def test_nan_voxels(tmp_path, good_volume):
    good_volume[3, 4, 5] = np.nan
    good_volume[0, 0, 0] = np.inf
    save(tmp_path / "c" / "c_flair.nii.gz", good_volume)
    with pytest.raises(DiffSegInputError, match=r"FLAIR file .* has 2 NaN/infinite voxels; replace them"):
        load_case(tmp_path / "c", ["flair"])


def test_constant_image(tmp_path, good_volume):
    save(tmp_path / "c" / "c_flair.nii.gz", good_volume)
    save(tmp_path / "c" / "c_t2.nii.gz", np.full((12, 10, 8), 7.0, dtype=np.float32))
    with pytest.raises(DiffSegInputError, match=r"T2 file .*c_t2.nii.gz is constant \(every voxel is 7\)"):
        load_case(tmp_path / "c", ["flair", "t2"])


def test_grids_that_do_not_overlap(tmp_path, good_volume):
    shifted = np.eye(4)
    shifted[:3, 3] = [500.0, 0.0, 0.0]
    save(tmp_path / "c" / "c_flair.nii.gz", good_volume)
    save(tmp_path / "c" / "c_t1.nii.gz", good_volume, shifted)
    with pytest.raises(DiffSegInputError, match=r"T1 file .* does not overlap the reference image .*c_flair"):
        load_case(tmp_path / "c", ["flair", "t1"])


def test_partly_overlapping_grid_fills_with_background(tmp_path, good_volume):
    shifted = np.eye(4)
    shifted[:3, 3] = [6.0, 0.0, 0.0]
    save(tmp_path / "c" / "c_flair.nii.gz", good_volume)
    save(tmp_path / "c" / "c_t1.nii.gz", good_volume + 50.0, shifted)
    t1 = load_case(tmp_path / "c", ["flair", "t1"]).images["t1"]
    assert np.allclose(t1[6:], good_volume[:6] + 50.0, atol=1e-4)  # a pure shift by whole voxels
    assert np.all(t1[:6] == np.float32(good_volume.min() + 50.0))


def test_missing_modality_names_it_and_lists_what_was_found(tmp_path, good_volume):
    save(tmp_path / "c" / "c_flair.nii.gz", good_volume)
    save(tmp_path / "c" / "c_t2.nii.gz", good_volume)
    message = r"no T1ce file for case folder .*c \(found: flair, t2\).*t1ce/t1c/t1gd"
    with pytest.raises(DiffSegInputError, match=message):
        load_case(tmp_path / "c", ["flair", "t1ce"])


def test_missing_label(tmp_path, good_volume):
    save(tmp_path / "c" / "c_flair.nii.gz", good_volume)
    assert load_case(tmp_path / "c", ["flair"]).label is None
    with pytest.raises(DiffSegInputError, match=r"no segmentation file for case folder"):
        load_case(tmp_path / "c", ["flair"], with_label=True)


def test_unreadable_file(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "c_flair.nii.gz").write_bytes(b"this is not a NIfTI file")
    with pytest.raises(DiffSegInputError, match=r"FLAIR file .* is not a readable NIfTI image"):
        load_case(tmp_path / "c", ["flair"])


def test_missing_explicit_file(tmp_path):
    with pytest.raises(DiffSegInputError, match=r"T1 file .*nope.nii.gz does not exist"):
        load_case({"t1": tmp_path / "nope.nii.gz"}, ["t1"])


@pytest.mark.parametrize("modalities, message", [
    (["flair", "pd"], r"'pd' is not an image modality"),
    (["seg"], r"'seg' is not an image modality"),
    (["flair", "t2f"], r"must be non-empty and distinct"),
    ([], r"must be non-empty and distinct"),
])
def test_bad_modality_list(tmp_path, good_volume, modalities, message):
    save(tmp_path / "c" / "c_flair.nii.gz", good_volume)
    with pytest.raises(DiffSegInputError, match=message):
        load_case(tmp_path / "c", modalities)
