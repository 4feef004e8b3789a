"""The engine runner with real child processes: progress parsing, exit codes, cancel = kill the tree.

The child here is a small stand-in engine (``python -m fake_engine``) that speaks the engine's
stdout protocol; the end-to-end tests run the real engine through the same runner.
"""

from __future__ import annotations

import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from DiffSegLib.runner import EngineRunner, parse_line, segment_arguments
from DiffSegLib.warmengines import WARM_ENGINES

FAKE_ENGINE = textwrap.dedent("""
    import json, os, subprocess, sys, time
    def emit(**kw):
        print(json.dumps(kw), flush=True)
    def next_request():
        while not os.path.exists(sys.argv[2]):
            time.sleep(0.02)
        wanted = json.load(open(sys.argv[2]))
        os.remove(sys.argv[2])
        os.chdir(wanted["cwd"] or ".")
        return wanted["argv"]
    if sys.argv[1] == "--wait-for-arguments":  # started ahead of time, as the engine's __main__
        if os.environ.get("FAKE_STAYS"):  # as the engine: after each good run, "idle" and the next request
            runs = 0
            while True:
                mode = next_request()[0]
                runs += 1
                print(f"stderr of run {runs}", file=sys.stderr, flush=True)
                emit(event="log", message=f"run {runs} of process {os.getpid()}")
                if mode == "bad-input":
                    emit(event="error", message="bad input")
                    sys.exit(2)
                if mode == "hang":
                    emit(event="progress", done=0, total=100, elapsed_s=0.0, eta_s=None, message="sampling")
                    time.sleep(600)
                emit(event="done", outputs={"run": str(runs)}, seconds=0.1)
                emit(event="idle")
        sys.argv = [sys.argv[0], *next_request()]
    mode = sys.argv[1]
    print("a plain line that is not JSON", flush=True)
    print("{not json either", flush=True)
    emit(event="log", message="loading model")
    if mode == "ok":
        for done in range(0, 5):
            emit(event="progress", done=done, total=4, elapsed_s=0.1 * done,
                 eta_s=None if done == 0 else 0.1 * (4 - done), message="sampling")
        print("tqdm-like noise", file=sys.stderr, flush=True)
        emit(event="done", outputs={"segmentation": "s.nii.gz"}, seconds=0.4)
    elif mode == "bad-input":
        emit(event="error", message="the model needs flair: add --flair <file>")
        sys.exit(2)
    elif mode == "crash":
        raise RuntimeError("boom inside the engine")
    elif mode in ("hang", "escape"):  # escape: the grandchild leaves the process group (setsid)
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                                 start_new_session=(mode == "escape"))
        emit(event="log", message=f"grandchild {child.pid}")
        emit(event="progress", done=0, total=100, elapsed_s=0.0, eta_s=None, message="sampling")
        time.sleep(600)
""")


@pytest.fixture
def fake_engine(tmp_path):
    (tmp_path / "fake_engine.py").write_text(FAKE_ENGINE)
    return lambda warm=False: EngineRunner(python=sys.executable, engine_path=tmp_path, module="fake_engine", warm=warm)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) counts as dead
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_parse_line_recognises_every_event_and_ignores_other_lines():
    progress = parse_line('{"event": "progress", "done": 3, "total": 12, "elapsed_s": 1.5, "eta_s": 4.5, "message": "x"}\n')
    assert progress.kind == "progress"
    assert progress.progress.done == 3 and progress.progress.total == 12
    assert progress.progress.fraction == pytest.approx(0.25)
    assert progress.progress.eta_s == pytest.approx(4.5)
    assert parse_line('{"event": "progress", "done": 0, "total": 5, "elapsed_s": 0, "eta_s": null, "message": ""}').progress.eta_s is None
    assert parse_line('{"event": "done", "outputs": {"a": "b"}, "seconds": 2}').kind == "done"
    assert parse_line('{"event": "error", "message": "bad"}').kind == "error"
    assert parse_line('{"event": "log", "message": "hi"}').kind == "log"
    for junk in ("", "hello", "{broken", "[1, 2]", '{"no_event": 1}', '"a string"'):
        assert parse_line(junk).kind == "text"


def test_segment_arguments_follow_the_engine_contract(tmp_path):
    args = segment_arguments("phantom", {"t2": tmp_path / "t2.nii.gz", "flair": tmp_path / "f.nii.gz"}, tmp_path / "out",
                             members=3, sampler="ddim", steps=7, seed=11, device="cpu", ensemble="adaptive",
                             slices=(4, 9))
    assert args[:3] == ["segment", "--model", "phantom"]
    assert args[args.index("--flair") + 1].endswith("f.nii.gz") and "--t2" in args
    assert args.index("--flair") < args.index("--t2")  # canonical order
    for flag, value in (("--members", "3"), ("--sampler", "ddim"), ("--steps", "7"), ("--ensemble", "adaptive"),
                        ("--seed", "11"), ("--device", "cpu"), ("--slices", "4:9"), ("--progress", "json")):
        assert args[args.index(flag) + 1] == value
    assert "--overwrite" in args and "--t1" not in args
    assert "--no-overview" in args, "Slicer shows the maps itself"
    assert "--crop-outputs" in args, "only the box of the non-zero voxels travels back"
    kept = segment_arguments("phantom", {}, tmp_path, members=1, sampler="ddim", steps=1, seed=0, kept=True)
    assert "--no-overview" not in kept and "--crop-outputs" not in kept, "files kept for the user: whole, with overview"


def test_successful_run_reports_progress_in_order_and_outputs(fake_engine):
    runner = fake_engine()
    runner.start(["ok"])
    seen = []
    result = runner.wait(on_event=seen.append, timeout=60)
    kinds = [e.kind for e in seen]
    assert kinds.count("progress") == 5 and kinds.count("text") == 2 and kinds[-1] == "done"
    assert [e.progress.done for e in seen if e.kind == "progress"] == [0, 1, 2, 3, 4]
    assert runner.last_progress.fraction == 1.0
    assert result.ok and result.returncode == 0 and result.outputs == {"segmentation": "s.nii.gz"}
    assert "tqdm-like noise" in result.stderr_tail
    assert not runner.running


def test_bad_input_gives_the_engine_message(fake_engine):
    runner = fake_engine()
    runner.start(["bad-input"])
    result = runner.wait(timeout=60)
    assert result.returncode == 2 and not result.ok
    assert result.failure_message() == "DiffSeg could not run: the model needs flair: add --flair <file>"


def test_crash_reports_exit_code_and_traceback(fake_engine):
    runner = fake_engine()
    runner.start(["crash"])
    result = runner.wait(timeout=60)
    assert result.returncode == 1 and not result.ok
    message = result.failure_message()
    assert "exit code 1" in message and "boom inside the engine" in message


@pytest.mark.parametrize("mode", ["hang", "escape"])
def test_poll_is_non_blocking_and_cancel_kills_the_whole_process_tree(fake_engine, mode):
    """Also a grandchild in its own session, which killing the process group misses (found without psutil,
    which Slicer does not ship)."""
    runner = fake_engine()
    runner.start([mode])
    grandchild = None
    deadline = time.monotonic() + 60
    while runner.last_progress is None and time.monotonic() < deadline:
        for event in runner.poll():  # returns at once, like the panel's QTimer callback
            if event.kind == "log" and event.data["message"].startswith("grandchild"):
                grandchild = int(event.data["message"].split()[1])
        time.sleep(0.02)
    assert runner.last_progress is not None and runner.last_progress.total == 100
    assert grandchild is not None and _alive(grandchild) and runner.running
    started = time.monotonic()
    runner.cancel()
    assert time.monotonic() - started < 10
    assert not runner.running and runner.cancelled
    assert not _alive(runner.process.pid)
    deadline = time.monotonic() + 10
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild), "the engine's own child survived the cancel"
    result = runner.result()
    assert result.cancelled and not result.ok and result.failure_message() == "The DiffSeg run was cancelled."


def test_wait_timeout_stops_the_child(fake_engine):
    runner = fake_engine()
    runner.start(["hang"])
    with pytest.raises(TimeoutError):
        runner.wait(timeout=1.0)
    assert not runner.running


def test_a_runner_runs_one_child_at_a_time(fake_engine):
    runner = fake_engine()
    runner.start(["hang"])
    try:
        with pytest.raises(RuntimeError, match="already running"):
            runner.start(["ok"])
    finally:
        runner.cancel()


@pytest.fixture
def warm_engine(fake_engine):
    yield lambda: fake_engine(warm=True)
    WARM_ENGINES.stop_all()


def test_a_warm_runner_takes_over_the_waiting_engine_and_starts_the_next(warm_engine, tmp_path):
    runner = warm_engine()
    waiting = runner.warm_up()
    assert runner.warm_up() is waiting and warm_engine().warm_up() is waiting, "one per configuration"
    time.sleep(0.5)
    assert waiting.poll() is None, "it waits"
    (tmp_path / "here").mkdir()
    requests = lambda: set(Path(tempfile.gettempdir()).glob("DiffSeg-request-*"))  # noqa: E731
    before = requests()
    runner.start(["ok"], cwd=tmp_path / "here")
    assert runner.process is waiting and runner.args == runner.command(["ok"]), "args as if started cold"
    seen = []
    result = runner.wait(on_event=seen.append, timeout=60)
    assert result.ok and result.outputs == {"segmentation": "s.nii.gz"}
    assert [e.progress.done for e in seen if e.kind == "progress"] == [0, 1, 2, 3, 4]
    following = warm_engine().warm_up()
    assert following is not waiting and following.poll() is None, "the next one waits already"
    assert requests() <= before, "the request was consumed, no partial file is left behind"


def _cancel_while_sampling(runner):
    """Start a run that hangs while sampling, wait for its first progress, cancel it."""
    runner.start(["hang"])
    deadline = time.monotonic() + 30
    while runner.last_progress is None and time.monotonic() < deadline:
        runner.poll()
        time.sleep(0.05)
    runner.cancel()


def test_cancel_kills_a_taken_over_engine_and_stop_all_ends_the_waiting_ones(warm_engine):
    runner = warm_engine()
    waiting = runner.warm_up()
    _cancel_while_sampling(runner)
    assert runner.result().cancelled and waiting.poll() is not None
    following = warm_engine().warm_up()
    WARM_ENGINES.stop_all()
    assert following.wait(timeout=30) is not None
    assert warm_engine().warm_up() is not following, "stopped engines are not handed out"


def test_an_engine_that_stays_serves_the_next_run_with_its_memory(fake_engine, tmp_path):
    """The engine's ``idle`` event ends a run: the same process goes back and takes the next run; each run sees only
    its own stderr; cancel after the run is over leaves it alone; a failed run ends it and a fresh one waits."""
    (tmp_path / "stays").mkdir()
    stays = lambda: EngineRunner(python=sys.executable, engine_path=tmp_path, module="fake_engine", warm=True,  # noqa: E731
                                 extra_env={"FAKE_STAYS": "1"})
    try:
        first = stays()
        process = first.warm_up()
        results = []
        for n in (1, 2, 3):
            runner = stays()
            runner.start(["ok"], cwd=tmp_path / "stays")
            logs = []
            result = runner.wait(on_event=lambda e: logs.append(e.data["message"]) if e.kind == "log" else None,
                                 timeout=60)
            results.append(result)
            assert result.ok and result.outputs == {"run": str(n)}, "the same process, its n-th run"
            assert runner.process is process and process.poll() is None and not runner.running
            assert f"stderr of run {n}" in result.stderr_tail and f"run {n - 1}" not in result.stderr_tail
            assert logs == [f"run {n} of process {process.pid}"], "no line of another run"
            runner.cancel()
            assert process.poll() is None and not runner.cancelled, "an ended run's cancel does not touch the engine"
        assert stays().warm_up() is process, "it waits again for the next run"

        failing = stays()
        failing.start(["bad-input"])
        result = failing.wait(timeout=60)
        assert result.returncode == 2 and result.error == "bad input" and process.wait(timeout=30) == 2
        following = stays().warm_up()
        assert following is not process and following.poll() is None, "a fresh engine waits after a failure"

        hanging = stays()
        _cancel_while_sampling(hanging)
        assert hanging.result().cancelled and following.wait(timeout=30) is not None, "cancel kills a staying engine"
    finally:
        WARM_ENGINES.stop_all()
