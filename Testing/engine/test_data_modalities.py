"""Which file is which modality: aliases, token matching, the seed's 2D layout, case listing."""

from pathlib import Path

import pytest

from DiffSegExtension.data.modalities import canonical_modality, find_case_files, list_cases
from DiffSegExtension.errors import DiffSegInputError


def touch(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")
    return folder


@pytest.mark.parametrize("token, expected", [
    ("FLAIR", "flair"), ("t2f", "flair"), ("T1", "t1"), ("t1n", "t1"), ("t1ce", "t1ce"), ("T1c", "t1ce"),
    ("t1GD", "t1ce"), ("t2", "t2"), ("T2w", "t2"), ("seg", "seg"), ("label", "seg"), ("gt", "seg"),
    ("t1x", None), ("brainmask", None), ("", None),
])
def test_canonical_modality(token, expected):
    assert canonical_modality(token) == expected


def test_brats_layout_matches_whole_tokens(tmp_path):
    folder = touch(tmp_path / "case", "Case_01_T1.nii.gz", "Case_01_t1ce.nii.gz", "Case_01_flair.nii",
                   "Case_01_t2w.nii.gz", "Case_01_seg.nii.gz", "Case_01_brainmask.nii.gz",
                   "LICENSE_t1.txt", "notes_flair.json", ".Case_01_t2.tmp.nii.gz")
    found = find_case_files(folder)
    assert {m: p.name for m, p in found.items()} == {
        "t1": "Case_01_T1.nii.gz", "t1ce": "Case_01_t1ce.nii.gz", "flair": "Case_01_flair.nii",
        "t2": "Case_01_t2w.nii.gz", "seg": "Case_01_seg.nii.gz"}


def test_brats2023_hyphenated_names(tmp_path):
    folder = touch(tmp_path / "c", "BraTS-GLI-00001-000-t2f.nii.gz", "BraTS-GLI-00001-000-t1c.nii.gz",
                   "BraTS-GLI-00001-000-t1n.nii.gz")
    assert set(find_case_files(folder)) == {"flair", "t1ce", "t1"}


def test_modality_token_inside_the_name_seed_layout(shared_data):
    found = find_case_files(shared_data / "brats2020_slices_seed_layout" / "training" / "000001")
    assert {m: p.name for m, p in found.items()} == {
        "flair": "brats_train_001_flair_080_w.nii.gz", "t1": "brats_train_001_t1_080_w.nii.gz",
        "t1ce": "brats_train_001_t1ce_080_w.nii.gz", "t2": "brats_train_001_t2_080_w.nii.gz",
        "seg": "brats_train_001_seg_080_w.nii.gz"}


def test_case_name_containing_a_modality_word_uses_the_last_token(tmp_path):
    folder = touch(tmp_path / "c", "seg_study_t2_flair.nii.gz")
    assert set(find_case_files(folder)) == {"flair"}


def test_two_files_for_one_modality_is_an_error(tmp_path):
    folder = touch(tmp_path / "c", "a_flair.nii.gz", "a_t2f.nii.gz", "a_t1.nii.gz")
    with pytest.raises(DiffSegInputError, match=r"2 files for modality 'flair' \(a_flair.nii.gz, a_t2f.nii.gz\)"):
        find_case_files(folder)


def test_missing_case_folder_is_an_error(tmp_path):
    with pytest.raises(DiffSegInputError, match="does not exist"):
        find_case_files(tmp_path / "nope")


def test_list_cases_of_a_root_and_of_a_case_folder(tmp_path):
    touch(tmp_path / "b_case", "b_flair.nii.gz")
    touch(tmp_path / "a_case", "a_flair.nii.gz", "a_seg.nii.gz")
    touch(tmp_path / "docs", "README.md")
    (tmp_path / "stray.txt").write_text("x")
    assert list_cases(tmp_path) == [tmp_path / "a_case", tmp_path / "b_case"]
    assert list_cases(tmp_path / "a_case") == [tmp_path / "a_case"]


def test_list_cases_of_the_seed_training_folder(shared_data):
    root = shared_data / "brats2020_slices_seed_layout" / "training"
    assert [p.name for p in list_cases(root)] == [f"00000{i}" for i in range(1, 7)]


def test_list_cases_without_cases_is_an_error(tmp_path):
    touch(tmp_path / "x", "readme.txt", "scan.nii.gz")
    with pytest.raises(DiffSegInputError, match=r"no cases found in .*<case>_<modality>\.nii\.gz"):
        list_cases(tmp_path)
