"""An engine that stays between runs (``DiffSegExtension.session``): what it keeps gives exactly the results of a
fresh process, and anything changed is read again."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from DiffSegExtension import session
from DiffSegExtension.cli import main
from DiffSegExtension.config import PreprocessConfig
from DiffSegExtension.data.loading import load_case
from DiffSegExtension.data.phantom import make_phantom, write_phantom_case
from DiffSegExtension.data.preparation import prepare_volume
from DiffSegExtension.inference.outputs import map_paths
from DiffSegExtension.model_card import resolve_model

SAMPLING = ["--model", "phantom", "--input", "p", "--members", "2", "--steps", "2", "--seed", "3"]
MAP_FILES = ("segmentation", "probability", "uncertainty", "entropy")


@pytest.fixture
def fresh_session():
    yield session
    session.enable(False)


@pytest.fixture
def case_folder(tmp_path):
    write_phantom_case(tmp_path, "p", make_phantom(5, shape=(40, 36, 14), oblique=True))
    return tmp_path


def _tumour_point(folder):
    image = nib.load(folder / "segmentation.nii.gz")
    voxels = np.argwhere(np.asarray(image.dataobj) > 0)
    centre = voxels[np.argmin(((voxels - voxels.mean(0)) ** 2).sum(1))]
    return ",".join(f"{v:.3f}" for v in nib.affines.apply_affine(image.affine, centre))


def _maps(folder):
    return {name: np.asarray(nib.load(folder / f"{name}.nii.gz").dataobj) for name in MAP_FILES}


def _assert_same_result(a, b):
    for name, values in _maps(a).items():
        np.testing.assert_array_equal(values, _maps(b)[name], err_msg=name)


class StayingEngine:
    """``python -m DiffSegExtension --wait-for-arguments`` as Slicer's runner drives it: a request, its events up to
    ``idle`` (or the process's end)."""

    def __init__(self, folder):
        self.folder, self.request = folder, folder / "request.json"
        self.process = subprocess.Popen([sys.executable, "-m", "DiffSegExtension", "--wait-for-arguments",
                                         str(self.request), str(os.getpid())], cwd=folder,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def run(self, *argv, cwd=None) -> list[str]:
        self.request.write_text(json.dumps({"argv": [*argv, "--progress", "json", "--overwrite"], "cwd": cwd}))
        events = []
        for line in self.process.stdout:
            events.append(json.loads(line)["event"] if line.startswith("{") else "text")
            if events[-1] == "idle":
                break
        return events

    def stop(self):
        self.process.kill()
        self.process.communicate(timeout=60)


def test_a_staying_engine_gives_a_fresh_processes_results_and_reads_what_changed(case_folder, tmp_path):
    engine = StayingEngine(case_folder)
    try:
        (case_folder / "elsewhere").mkdir()
        assert engine.run("segment", *SAMPLING[:3], str(case_folder / "p"), *SAMPLING[4:], "--out",
                          str(case_folder / "s0"), cwd=str(case_folder / "elsewhere"))[-2:] == ["done", "idle"]
        # The next requests give no folder: they run where the engine started, not in the last run's folder.
        assert engine.run("segment", *SAMPLING, "--out", "again")[-2:] == ["done", "idle"]
        _assert_same_result(case_folder / "s0", case_folder / "again")  # from the kept preparation
        click = _tumour_point(case_folder / "s0")
        previous = "s0"
        for n in (1, 2):  # each click refines a copy of the result before, as the module stages it
            shutil.copytree(case_folder / previous, case_folder / f"staged{n}")
            assert engine.run("refine", *SAMPLING, "--previous", f"staged{n}", f"--include={click}",
                              "--out", f"s{n}")[-2:] == ["done", "idle"]
            previous = f"s{n}"
        # An undo: refine the first result again, which the engine no longer holds in memory.
        shutil.copytree(case_folder / "s0", case_folder / "undone")
        assert engine.run("refine", *SAMPLING, "--previous", "undone", f"--exclude={click}",
                          "--out", "s3")[-2:] == ["done", "idle"]
        assert engine.process.poll() is None, "it waits for the next run"
        assert engine.run("refine", *SAMPLING, "--previous", "missing", f"--include={click}", "--out", "s4")[-1] == "error"
        assert engine.process.wait(timeout=60) == 2, "a failed run ends the engine with the run's status"
    finally:
        engine.stop()

    os.chdir(case_folder)  # the same commands in this process, nothing kept (as a `diffseg` process)
    try:
        assert main(["segment", *SAMPLING, "--out", "f0", "--progress", "none"]) == 0
        for n, previous, point in ((1, "f0", f"--include={click}"), (2, "f1", f"--include={click}"),
                                   (3, "f0", f"--exclude={click}")):
            assert main(["refine", *SAMPLING, "--previous", previous, point, "--out", f"f{n}", "--progress", "none"]) == 0
    finally:
        os.chdir(tmp_path)
    for n in range(4):
        _assert_same_result(case_folder / f"s{n}", case_folder / f"f{n}")


def test_the_maps_are_taken_only_for_the_bytes_written_with_them(fresh_session, tmp_path):
    written = map_paths(tmp_path / "a", ("wt",))
    for paths in written.values():
        paths[0].parent.mkdir(exist_ok=True)
        paths[0].write_bytes(os.urandom(64))
    maps = {kind: np.random.default_rng(0).random((1, 4, 4, 4), dtype=np.float32) for kind in written}
    session.remember_maps(written, maps)
    assert session.take_maps(written) is None, "off: nothing kept"

    session.enable()
    session.remember_maps(written, maps)
    shutil.copytree(tmp_path / "a", tmp_path / "copy")
    changed = map_paths(tmp_path / "changed", ("wt",))
    shutil.copytree(tmp_path / "a", tmp_path / "changed")
    changed["entropy"][0].write_bytes(os.urandom(64))
    assert session.take_maps(changed) is None, "one file's bytes differ"
    taken = session.take_maps(map_paths(tmp_path / "copy", ("wt",)))
    assert taken is maps, "a copy of the same bytes: the arrays themselves"
    assert session.take_maps(written) is None, "handed over once: the taker may change them"


def test_a_kept_preparation_selects_exactly_the_slices_prepared_alone(fresh_session, case_folder):
    session.enable()
    case = load_case(case_folder / "p", ("flair", "t1ce"))
    settings = dict(modalities=("flair", "t1ce"), preprocess=PreprocessConfig(), size_multiple=8, regions=("wt",),
                    optional=())
    full = session.prepared_volume(case, **settings)
    assert session.prepared_volume(case, **settings) is full
    keep = full.source_slices[3:6]
    alone = prepare_volume(case, settings["modalities"], settings["preprocess"], 8, keep=keep)
    kept = session.prepared_volume(case, **settings, keep=keep)
    assert kept.source_slices == alone.source_slices == keep
    assert np.array_equal(kept.images, alone.images) and np.array_equal(kept.brain, alone.brain)
    assert kept._offset == alone._offset

    case.images["flair"][10, 10, 5] += 1.0  # other voxels: prepared again
    assert session.prepared_volume(case, **settings) is not full


def test_the_model_is_kept_until_its_files_change(fresh_session, tmp_path):
    folder = tmp_path / "phantom"
    shutil.copytree(resolve_model("phantom"), folder)
    session.enable()
    model = session.model(folder)
    assert session.model(folder) is model
    weights = folder / "weights.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert session.model(folder) is not model
