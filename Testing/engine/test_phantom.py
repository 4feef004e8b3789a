"""The procedural brain-tumour phantom: labels, MRI-like contrasts, geometry, files."""

import nibabel as nib
import numpy as np
import pytest

from DiffSegExtension.data.loading import load_case
from DiffSegExtension.data.phantom import TISSUES, make_phantom, write_phantom_case
from DiffSegExtension.errors import DiffSegInputError

SHAPE = (64, 64, 40)
SEEDS = range(4)


@pytest.fixture(scope="module")
def phantoms():
    return {seed: make_phantom(seed, shape=SHAPE, oblique=bool(seed % 2)) for seed in SEEDS}


def tissue(phantom, name: str) -> np.ndarray:
    """Voxels of a healthy tissue outside the tumour."""
    return (phantom.tissue == 1 + TISSUES.index(name)) & (phantom.label == 0)


def test_brats_labels(phantoms):
    for phantom in phantoms.values():
        assert phantom.label.dtype == np.uint8 and phantom.label.shape == SHAPE
        assert {2, 4} <= set(np.unique(phantom.label)) <= {0, 1, 2, 4}
    assert any((p.label == 1).any() for p in phantoms.values())


def test_raw_intensities_with_zero_background(phantoms):
    for phantom in phantoms.values():
        brain = phantom.images["flair"] > 0
        assert 0.15 < brain.mean() < 0.6
        for image in phantom.images.values():
            assert image.dtype == np.float32 and image.shape == SHAPE
            assert np.array_equal(image > 0, brain)
            assert 100 < np.median(image[brain]) < 3000 and image.max() < 10000
        assert not phantom.label[~brain].any()


def test_tissue_contrasts(phantoms):
    for phantom in phantoms.values():
        med = {m: {t: np.median(phantom.images[m][tissue(phantom, t)]) for t in ("csf", "gm", "wm")}
               for m in phantom.images}
        lesion = {m: {k: np.median(phantom.images[m][phantom.label == v]) for k, v in (("edema", 2), ("rim", 4))}
                  for m in phantom.images}
        assert med["t1"]["wm"] > med["t1"]["gm"] > med["t1"]["csf"]
        assert med["t2"]["csf"] > med["t2"]["gm"] > med["t2"]["wm"]
        assert med["flair"]["csf"] < 0.7 * min(med["flair"]["gm"], med["flair"]["wm"])  # partial volume in sulci
        assert lesion["t1ce"]["rim"] > 1.2 * med["t1ce"]["wm"]
        assert lesion["flair"]["edema"] > max(med["flair"]["gm"], med["flair"]["wm"])
        assert lesion["t2"]["edema"] > med["t2"]["wm"] and lesion["t1"]["edema"] < med["t1"]["wm"]
        if (phantom.label == 1).any():
            necrosis = phantom.label == 1
            assert np.median(phantom.images["t1ce"][necrosis]) < med["t1ce"]["wm"]
            assert np.median(phantom.images["t2"][necrosis]) > med["t2"]["gm"]


def best_threshold_dice(image: np.ndarray, target: np.ndarray, brain: np.ndarray) -> float:
    values, truth = image[brain], target[brain]
    best = 0.0
    for threshold in np.percentile(values, np.arange(1, 100)):
        for predicted in (values > threshold, values < threshold):
            best = max(best, 2 * (predicted & truth).sum() / (predicted.sum() + truth.sum()))
    return best


def test_tumour_is_not_separable_by_one_threshold(phantoms):
    for phantom in phantoms.values():
        brain = phantom.images["t1"] > 0
        for image in phantom.images.values():
            assert best_threshold_dice(image, phantom.label > 0, brain) < 0.85


def axis_tilts_degrees(affine: np.ndarray) -> np.ndarray:
    """Angle of each voxel axis to its closest world axis."""
    directions = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    return np.degrees(np.arccos(np.clip(np.abs(directions).max(axis=0), 0.0, 1.0)))


def test_affines(phantoms):
    for seed, phantom in phantoms.items():
        tilts = axis_tilts_degrees(phantom.affine)
        if seed % 2:
            assert (tilts >= 9.9).sum() >= 2 and tilts.max() < 40.0
        else:
            assert np.allclose(tilts, 0.0, atol=1e-6)
        assert np.linalg.norm(phantom.affine[:3, 3]) > 1.0
    codes = {nib.aff2axcodes(make_phantom(seed, shape=(16, 16, 16)).affine) for seed in range(8)}
    assert len(codes) >= 3  # the stored orientation varies with the seed


def test_anisotropic_spacing_and_the_brain_fits_the_field_of_view():
    phantom = make_phantom(5, shape=(70, 56, 24), spacing=(0.9, 1.1, 2.5), oblique=True, modalities=("t1",))
    assert phantom.spacing == pytest.approx((0.9, 1.1, 2.5)) and list(phantom.images) == ["t1"]
    brain = phantom.images["t1"] > 0
    faces = [brain[0], brain[-1], brain[:, 0], brain[:, -1], brain[:, :, 0], brain[:, :, -1]]
    assert not any(face.any() for face in faces)


def test_reproducible_and_seed_dependent():
    a, b, c = (make_phantom(seed, shape=(32, 32, 24)) for seed in (7, 7, 8))
    assert all(np.array_equal(a.images[m], b.images[m]) for m in a.images)
    assert np.array_equal(a.label, b.label) and np.array_equal(a.affine, b.affine)
    assert not np.array_equal(a.images["flair"], c.images["flair"])


def test_a_modality_does_not_depend_on_the_others_asked_for():
    full = make_phantom(4, shape=(32, 32, 24))
    flair_only = make_phantom(4, shape=(32, 32, 24), modalities=("t2", "flair"))
    assert np.array_equal(full.images["flair"], flair_only.images["flair"])
    assert np.array_equal(full.label, flair_only.label)


def test_tumour_free_phantom():
    phantom = make_phantom(3, shape=(48, 48, 32), tumour_probability=0.0)
    assert not phantom.has_tumour and not phantom.label.any()
    assert phantom.images["flair"].max() > 0


def test_written_case_reloads_with_the_same_geometry(tmp_path, phantoms):
    phantom = phantoms[1]
    folder = write_phantom_case(tmp_path, "ph_001", phantom)
    assert folder == tmp_path / "ph_001"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"ph_001_{m}.nii.gz" for m in ("flair", "t1", "t1ce", "t2", "seg"))  # no temporary files left
    case = load_case(folder, ["t2", "flair", "t1", "t1ce"], with_label=True)
    assert np.allclose(case.affine, phantom.affine, atol=1e-5)
    assert all(np.array_equal(case.images[m], phantom.images[m]) for m in phantom.images)
    assert np.array_equal(case.label, (phantom.label > 0).astype(np.uint8))
    seg = nib.load(str(folder / "ph_001_seg.nii.gz"))
    assert seg.get_data_dtype() == np.uint8 and np.array_equal(np.asarray(seg.dataobj), phantom.label)
    assert int(seg.header["sform_code"]) == 1


def test_bad_arguments():
    with pytest.raises(DiffSegInputError, match="phantom modalities"):
        make_phantom(0, modalities=("flair", "pd"))
    with pytest.raises(DiffSegInputError, match="phantom shape"):
        make_phantom(0, shape=(64, 64))


def test_phantom_dataset_varies_the_grid_and_is_reproducible(tmp_path):
    from DiffSegExtension.data.phantom import write_phantom_dataset

    folders = write_phantom_dataset(tmp_path / "a", [5, 6, 7])
    images = [nib.load(f / f"{f.name}_flair.nii.gz") for f in folders]
    fields_of_view = {round(float(i.shape[0] * np.linalg.norm(i.affine[:3, 0])), 1) for i in images}
    assert len(fields_of_view) == 3 and all(58 <= fov <= 141 for fov in fields_of_view), fields_of_view
    again = write_phantom_dataset(tmp_path / "b", [6])[0]
    assert np.array_equal(nib.load(again / "phantom6_seg.nii.gz").get_fdata(),
                          nib.load(folders[1] / "phantom6_seg.nii.gz").get_fdata())
    before = (folders[0] / "phantom5_t1.nii.gz").stat().st_mtime_ns
    write_phantom_dataset(tmp_path / "a", [5])
    assert (folders[0] / "phantom5_t1.nii.gz").stat().st_mtime_ns == before, "existing cases are kept"
