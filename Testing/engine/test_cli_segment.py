"""`diffseg segment` end to end in a real child process, and the geometry of its outputs."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from DiffSegExtension.data.phantom import make_phantom, write_phantom_case
from testing_utils import engine_env


def run_engine(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "DiffSegExtension", *map(str, args)], env=engine_env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def oblique_case(tmp_path_factory):
    """Non-isotropic (0.9 × 1.2 × 2.0 mm) phantom on an oblique grid."""
    phantom = make_phantom(11, shape=(56, 48, 20), spacing=(0.9, 1.2, 2.0), oblique=True)
    assert not np.allclose(phantom.affine[:3, :3], np.diag(np.diag(phantom.affine[:3, :3]))), "affine must be oblique"
    return write_phantom_case(tmp_path_factory.mktemp("oblique"), "oblique", phantom)


def test_segment_writes_every_output_in_the_input_geometry(tmp_path, tiny_run, oblique_case):
    out = tmp_path / "out"
    done = run_engine("segment", "--model", tiny_run, "--flair", oblique_case / "oblique_flair.nii.gz",
                      "--t1ce", oblique_case / "oblique_t1ce.nii.gz", "--out", out, "--members", 3, "--steps", 3,
                      "--sampler", "ddim", "--progress", "json")
    assert done.returncode == 0, done.stderr[-2000:]
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    progress = [e for e in events if e["event"] == "progress"]
    assert progress[0]["done"] == 0 and progress[-1]["done"] == progress[-1]["total"] > 0
    assert [e["done"] for e in progress] == list(range(progress[-1]["total"] + 1)), "one line per sampler step"
    final = events[-1]
    assert final["event"] == "done"
    reference = nib.load(oblique_case / "oblique_flair.nii.gz")
    for name, dtype, (lo, hi) in (("segmentation", np.uint8, (0, 1)), ("probability", np.float32, (0, 1)),
                                  ("uncertainty", np.float32, (0, 0.25)), ("entropy", np.float32, (0, 1))):
        image = nib.load(final["outputs"][name])
        assert image.shape == reference.shape, name
        assert np.allclose(image.affine, reference.affine, atol=1e-5), name
        assert image.get_data_dtype() == dtype, name
        data = np.asanyarray(image.dataobj)
        assert data.min() >= lo and data.max() <= hi, name
    seg = np.asanyarray(nib.load(final["outputs"]["segmentation"]).dataobj)
    prob = nib.load(final["outputs"]["probability"]).get_fdata()
    assert np.array_equal(seg, (prob >= 0.5).astype(np.uint8)), "mask = probability ≥ 0.5"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["options"]["members"] == 3 and summary["passes_per_slice"] == 9
    assert (out / "overview.png").stat().st_size > 5000


def test_same_seed_same_result_and_slice_range_matches_the_whole_run(tmp_path, tiny_run, oblique_case):
    args = ["segment", "--model", tiny_run, "--input", oblique_case, "--members", 2, "--steps", 3, "--progress", "none"]
    assert run_engine(*args, "--out", tmp_path / "a").returncode == 0
    assert run_engine(*args, "--out", tmp_path / "b", "--no-overview").returncode == 0
    assert not (tmp_path / "b" / "overview.png").exists()
    assert "overview" not in json.loads((tmp_path / "b" / "summary.json").read_text())["files"]
    assert run_engine(*args, "--out", tmp_path / "part", "--slices", "8:12").returncode == 0
    load = lambda p: nib.load(p / "probability.nii.gz").get_fdata()  # noqa: E731
    a, b, part = load(tmp_path / "a"), load(tmp_path / "b"), load(tmp_path / "part")
    assert np.array_equal(a, b), "seeded and reproducible"
    axis = json.loads((tmp_path / "part" / "summary.json").read_text())["slice_axis"]
    inside = [slice(None)] * 3
    inside[axis] = slice(8, 12)
    outside = np.ones(part.shape, bool)
    outside[tuple(inside)] = False
    assert np.all(part[outside] == 0), "slices outside --slices are not sampled"
    # Noise is keyed by (seed, slice, member): the sub-range reproduces the whole run there (the
    # common crop box differs, so allow a few boundary pixels to differ).
    assert np.mean(np.abs(part[tuple(inside)] - a[tuple(inside)]) > 0.26) < 0.02


def test_batch_mode_segments_a_folder_of_cases(tmp_path, tiny_run, phantom_cases):
    out = tmp_path / "batch"
    done = run_engine("segment", "--model", tiny_run, "--input", phantom_cases, "--out", out, "--members", 1,
                      "--steps", 1, "--progress", "none", "--slices", "10:12")
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["phantom0", "phantom1", "phantom2", "phantom3"]
    assert all((out / c / "segmentation.nii.gz").is_file() for c in ("phantom0", "phantom3"))


def test_suspicious_inputs_warn_before_the_run_but_do_not_stop_it(tmp_path, tiny_run):
    """A head with noisy air (not skull-stripped) warns on stderr, names the sequence, and still segments."""
    phantom = make_phantom(3, shape=(48, 48, 16), modalities=("flair", "t1ce"))
    rng = np.random.default_rng(0)
    phantom.images["flair"] = phantom.images["flair"] + rng.uniform(5, 40, phantom.shape).astype(np.float32)
    case = write_phantom_case(tmp_path, "noisy", phantom)
    done = run_engine("segment", "--model", tiny_run, "--input", case, "--out", tmp_path / "out", "--members", 1,
                      "--steps", 1, "--progress", "none", "--slices", "6:8")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "warning: noisy: FLAIR does not look skull-stripped" in done.stderr
    assert "T1ce does not look skull-stripped" not in done.stderr
    assert (tmp_path / "out" / "segmentation.nii.gz").is_file()


def test_without_model_each_case_gets_the_bundled_model_made_for_its_sequences(tmp_path):
    """FLAIR alone → brats-flair (same whole tumour, faster: docs/results.md §5); FLAIR + T2 → brats-regions."""
    cases = tmp_path / "cases"
    write_phantom_case(cases, "flair_only", make_phantom(1, shape=(48, 48, 8), modalities=("flair",)))
    write_phantom_case(cases, "flair_t2", make_phantom(2, shape=(48, 48, 8), modalities=("flair", "t2")))
    out = tmp_path / "out"
    done = run_engine("segment", "--input", cases, "--out", out, "--members", 1, "--steps", 1, "--progress", "none",
                      "--slices", "3:5", "--no-overview")
    assert done.returncode == 0, done.stderr[-2000:]
    models = {case: json.loads((out / case / "summary.json").read_text())["model"]["name"]
              for case in ("flair_only", "flair_t2")}
    assert models == {"flair_only": "brats-flair", "flair_t2": "brats-regions"}
