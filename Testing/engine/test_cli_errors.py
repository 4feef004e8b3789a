"""Each bad input gives exit status 2, one clear line naming the problem and the fix, and writes nothing."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from DiffSegExtension.cli import main
from DiffSegExtension.model_card import read_weights


@pytest.fixture()
def case(tmp_path, phantom_cases) -> Path:
    target = tmp_path / "case"
    shutil.copytree(phantom_cases / "phantom0", target)
    return target


def flair_t1ce(case: Path) -> list[str]:
    return ["--flair", str(case / "phantom0_flair.nii.gz"), "--t1ce", str(case / "phantom0_t1ce.nii.gz")]


def fails_cleanly(capsys, argv, *fragments, out: Path | None = None) -> str:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("diffseg: error: "), err
    for fragment in fragments:
        assert fragment.lower() in err.lower(), (fragment, err)
    if out is not None:
        assert not out.exists(), "nothing may be written on bad input"
        assert not any(p.name.startswith(f".{out.name}.") for p in out.parent.iterdir()), "no temp folder left"
    return err


def write_like(path: Path, data: np.ndarray, affine=None) -> Path:
    nib.save(nib.Nifti1Image(data.astype(np.float32), np.eye(4) if affine is None else affine), path)
    return path


def segment(tiny_run, out, *inputs):
    return ["segment", "--model", tiny_run, *inputs, "--out", out, "--members", 1, "--steps", 1, "--progress", "none"]


def test_missing_modality_file(capsys, tmp_path, tiny_run, case):
    (case / "phantom0_t1ce.nii.gz").unlink()
    out = tmp_path / "out"
    fails_cleanly(capsys, segment(tiny_run, out, "--input", case), "t1ce", "missing", out=out)


def test_missing_modality_flag_and_unknown_modality(capsys, tmp_path, tiny_run, case):
    out = tmp_path / "out"
    fails_cleanly(capsys, segment(tiny_run, out, "--flair", case / "phantom0_flair.nii.gz"), "--t1ce", out=out)
    fails_cleanly(capsys, segment(tiny_run, out, *flair_t1ce(case), "--t2", case / "phantom0_t2.nii.gz"),
                  "--t2", "not one of its inputs", out=out)


def test_2d_and_4d_where_3d_is_expected(capsys, tmp_path, tiny_run, case):
    out = tmp_path / "out"
    flat = write_like(tmp_path / "flat_flair.nii.gz", np.random.rand(40, 40))
    fails_cleanly(capsys, segment(tiny_run, out, "--flair", flat, "--t1ce", case / "phantom0_t1ce.nii.gz"), "2D", out=out)
    four = write_like(tmp_path / "four_flair.nii.gz", np.random.rand(20, 20, 10, 2))
    fails_cleanly(capsys, segment(tiny_run, out, "--flair", four, "--t1ce", case / "phantom0_t1ce.nii.gz"), "4D", out=out)


def test_grids_that_do_not_overlap(capsys, tmp_path, tiny_run, case):
    image = nib.load(case / "phantom0_t1ce.nii.gz")
    far = image.affine.copy()
    far[:3, 3] += 1000.0  # a metre away
    moved = write_like(tmp_path / "far_t1ce.nii.gz", image.get_fdata(), far)
    out = tmp_path / "out"
    fails_cleanly(capsys, segment(tiny_run, out, "--flair", case / "phantom0_flair.nii.gz", "--t1ce", moved),
                  "overlap", out=out)


def test_nan_and_constant_images(capsys, tmp_path, tiny_run, case):
    image = nib.load(case / "phantom0_flair.nii.gz")
    data = image.get_fdata()
    data[3, 3, 3] = np.nan
    bad = write_like(tmp_path / "nan_flair.nii.gz", data, image.affine)
    out = tmp_path / "out"
    fails_cleanly(capsys, segment(tiny_run, out, "--flair", bad, "--t1ce", case / "phantom0_t1ce.nii.gz"), "NaN", out=out)
    flat = write_like(tmp_path / "const_flair.nii.gz", np.full(image.shape, 7.0), image.affine)
    fails_cleanly(capsys, segment(tiny_run, out, "--flair", flat, "--t1ce", case / "phantom0_t1ce.nii.gz"), "constant",
                  out=out)


def test_empty_slice_range(capsys, tmp_path, tiny_run, case):
    out = tmp_path / "out"
    fails_cleanly(capsys, [*segment(tiny_run, out, "--input", case), "--slices", "9:9"], "--slices", out=out)
    fails_cleanly(capsys, [*segment(tiny_run, out, "--input", case), "--slices", "500:600"], "slice", out=out)


def test_model_card_and_weights_that_disagree(capsys, tmp_path, tiny_run, case):
    model = tmp_path / "model"
    shutil.copytree(tiny_run, model)
    card = json.loads((model / "model.json").read_text())
    card["config"]["network"]["channels"] = [16, 32, 64, 64]
    (model / "model.json").write_text(json.dumps(card))
    out = tmp_path / "out"
    fails_cleanly(capsys, segment(model, out, "--input", case), "disagree", out=out)
    card = json.loads((tiny_run / "model.json").read_text())
    card["modalities"] = ["t2", "flair"]
    (model / "model.json").write_text(json.dumps(card))
    fails_cleanly(capsys, segment(model, out, "--input", case), "modalities", out=out)


def test_weights_that_were_modified(capsys, tmp_path, tiny_run, case):
    model = tmp_path / "model"
    shutil.copytree(tiny_run, model)
    with open(model / "weights.safetensors", "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x00\x01\x02\x03")
    out = tmp_path / "out"
    fails_cleanly(capsys, segment(model, out, "--input", case), "SHA-256", out=out)


class _Exploit:
    """Unpickling this runs code (writes a marker file) — exactly what must never happen."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


@pytest.mark.parametrize("how", ["pickle", "torch.save"])
def test_weights_that_would_execute_code_are_refused(capsys, tmp_path, tiny_run, case, how):
    model = tmp_path / "model"
    shutil.copytree(tiny_run, model)
    marker = tmp_path / "pwned"
    payload = {"model.x": _Exploit(marker)}
    if how == "pickle":
        (model / "weights.safetensors").write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, model / "weights.safetensors")
    card = json.loads((model / "model.json").read_text())
    card.pop("weights_sha256")
    (model / "model.json").write_text(json.dumps(card))
    out = tmp_path / "out"
    fails_cleanly(capsys, segment(model, out, "--input", case), "never unpickles", out=out)
    assert not marker.exists(), "the payload must not have run"


def test_safetensors_whose_header_length_starts_with_the_pickle_opcode_loads(tmp_path):
    """The 8-byte header length of a safetensors file may begin with 0x80, the byte pickles start with."""
    tensors = {"w": torch.arange(6.0).reshape(2, 3)}
    path = tmp_path / "weights.safetensors"
    for pad in range(256):
        save_file(tensors, path, metadata={"pad": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    assert torch.equal(read_weights(path)["w"], tensors["w"])


def test_output_folder_that_exists(capsys, tmp_path, tiny_run, case):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    fails_cleanly(capsys, segment(tiny_run, out, "--input", case), "--overwrite")
    assert (out / "keep.txt").read_text() == "mine" and len(list(out.iterdir())) == 1
    assert main([str(a) for a in segment(tiny_run, out, "--input", case, "--overwrite", "--slices", "10:11")]) == 0
    assert (out / "segmentation.nii.gz").is_file() and not (out / "keep.txt").exists()


def test_unknown_model_and_sampler_arguments(capsys, tmp_path, case):
    out = tmp_path / "out"
    fails_cleanly(capsys, ["segment", "--model", tmp_path / "nowhere", "--input", case, "--out", out], "no model", out=out)


def test_evaluate_never_falls_back_to_other_cases(capsys, tmp_path, tiny_run, phantom_cases):
    """The model's validation case is absent from --data: refuse rather than score (possibly training) cases."""
    data = tmp_path / "data"
    for name in ("phantom0", "phantom1"):
        shutil.copytree(phantom_cases / name, data / name)
    out = tmp_path / "report"
    fails_cleanly(capsys, ["evaluate", "--model", tiny_run, "--data", data, "--out", out, "--members", 1, "--steps", 1,
                           "--progress", "none"], "phantom3", "--cases", out=out)
