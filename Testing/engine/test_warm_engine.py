"""`python -m DiffSegExtension --wait-for-arguments`: an engine started ahead of time (real child processes); one
that stays after its run: test_session.py."""

import json
import os
import subprocess
import sys

from DiffSegExtension.data.phantom import make_phantom, write_phantom_case


def _waiting_engine(request, owner):
    return subprocess.Popen([sys.executable, "-m", "DiffSegExtension", "--wait-for-arguments", str(request), str(owner)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_it_runs_the_requested_command_in_the_requested_folder(tmp_path):
    write_phantom_case(tmp_path, "p", make_phantom(3, shape=(32, 32, 12)))
    request = tmp_path / "request.json"
    engine = _waiting_engine(request, os.getpid())
    argv = ["segment", "--model", "phantom", "--input", "p", "--out", "out", "--members", "1", "--steps", "1",
            "--progress", "json"]
    request.write_text(json.dumps({"argv": argv, "cwd": str(tmp_path)}))
    events = []
    for line in engine.stdout:  # until the run's end: `idle` (the engine then waits for the next request)
        events.append(json.loads(line)["event"])
        if events[-1] == "idle":
            break
    assert events[-2:] == ["done", "idle"] and engine.poll() is None, engine.communicate(timeout=60)[1]
    engine.kill()
    engine.communicate(timeout=60)
    assert (tmp_path / "out" / "segmentation.nii.gz").exists(), "relative paths are read in the request's cwd"
    assert not request.exists(), "the request is consumed"


def test_it_ends_by_itself_when_its_owner_is_gone(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    engine = _waiting_engine(tmp_path / "never.json", gone.pid)
    engine.communicate(timeout=120)
    assert engine.returncode == 0


def test_its_quick_exit_keeps_the_error_and_the_status(tmp_path):
    # The engine ends with os._exit (no interpreter teardown): piped output must still arrive, with status 2.
    request = tmp_path / "request.json"
    engine = _waiting_engine(request, os.getpid())
    request.write_text(json.dumps({"argv": ["segment", "--input", "missing", "--out", "out", "--progress", "json"],
                                   "cwd": str(tmp_path)}))
    stdout, stderr = engine.communicate(timeout=300)
    assert engine.returncode == 2
    assert json.loads(stdout.splitlines()[-1])["event"] == "error"
    assert "diffseg: error:" in stderr and "missing" in stderr
