"""Run the engine in a child process and turn its stdout into events.

The engine (``python -m DiffSegExtension segment ... --progress json``) prints one JSON object per
line: ``progress`` once per sampler step, ``log``, then ``done`` (with the output paths) or
``error``. Lines that are not JSON objects are kept as plain text events.

With ``warm=True`` a run takes over an engine started ahead of time (:mod:`.warmengines`) instead of
starting a process. A run ends with the engine's ``idle`` event (the engine stays, with its models and
last result in memory, and goes back to wait for the next run) or with its exit (a new one is started
for the run after).

Threading rule: the reader threads (:class:`~.warmengines.EngineOutput`) only *queue* raw lines (stdout) or
keep the tail (stderr); all parsing and every callback happen on the caller's thread, in :meth:`EngineRunner.poll` or
:meth:`EngineRunner.wait`. No Qt and no MRML here, so the runner works the same in Slicer (driven by
a ``qt.QTimer``), in the Python console (blocking) and in tests.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from .paths import engine_python, engine_root
from .processtree import kill_process_tree
from .warmengines import EOF_MARK, WAIT_FLAG, WARM_ENGINES, EngineOutput, Waiting


@dataclass(frozen=True)
class Progress:
    """One sampler step: ``done`` of ``total`` steps, seconds so far and estimated seconds left."""

    done: int
    total: int
    elapsed_s: float = 0.0
    eta_s: float | None = None
    message: str = ""

    @property
    def fraction(self) -> float:
        """``done / total`` in [0, 1] (0 when total is 0)."""
        return min(1.0, max(0.0, self.done / self.total)) if self.total > 0 else 0.0


@dataclass(frozen=True)
class EngineEvent:
    """A parsed stdout line. ``kind`` is ``progress``, ``log``, ``done``, ``error`` or ``text``."""

    kind: str
    data: dict
    line: str

    @property
    def progress(self) -> Progress | None:
        if self.kind != "progress":
            return None
        d = self.data
        eta = d.get("eta_s")
        return Progress(int(d.get("done", 0)), int(d.get("total", 0)), float(d.get("elapsed_s", 0.0)),
                        None if eta is None else float(eta), str(d.get("message", "")))


def parse_line(line: str) -> EngineEvent:
    """Parse one stdout line. JSON objects with an ``event`` key become that kind; else ``text``."""
    text = line.rstrip("\r\n")
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("event"), str):
            return EngineEvent(data["event"], data, text)
    return EngineEvent("text", {"message": text}, text)


@dataclass
class EngineResult:
    """How a run ended. ``ok`` means exit code 0 *and* a ``done`` event with outputs."""

    returncode: int | None
    cancelled: bool = False
    outputs: dict = field(default_factory=dict)
    seconds: float | None = None
    error: str | None = None
    stderr_tail: str = ""

    @property
    def ok(self) -> bool:
        return not self.cancelled and self.returncode == 0 and bool(self.outputs)

    def failure_message(self) -> str:
        """One readable sentence (plus the end of stderr for crashes) explaining a failed run."""
        if self.cancelled:
            return "The DiffSeg run was cancelled."
        if self.error:
            return f"DiffSeg could not run: {self.error}"
        if self.returncode == 0:
            return "The DiffSeg engine finished without reporting its outputs."
        tail = f"\n\nEnd of the engine's error output:\n{self.stderr_tail}" if self.stderr_tail else ""
        return f"The DiffSeg engine stopped with exit code {self.returncode}.{tail}"


def segment_arguments(model: str | Path, inputs: Mapping[str, str | Path], out_dir: str | Path, *,
                      members: int, sampler: str, steps: int, seed: int, device: str = "auto",
                      ensemble: str = "full", slices: tuple[int, int] | None = None,
                      kept: bool = False) -> list[str]:
    """Command-line arguments of ``python -m DiffSegExtension`` for one segmentation run.

    :param inputs: modality (``flair``, ``t1``, ``t1ce``, ``t2``) → NIfTI path.
    :param ensemble: ``full`` (every member on every slice) or ``adaptive`` (see the engine's ``inference.adaptive``).
    :param slices: half-open ``(a, b)`` range of source voxel indices along the slice axis.
    :param kept: the engine's files are kept for the user: render overview.png and write the volumes on the whole
        input grid; otherwise no overview, and each volume only over the box of its non-zero voxels
        (``--crop-outputs``: several times less to write and read back).
    """
    args = ["segment", "--model", str(model)]
    for modality in ("flair", "t1", "t1ce", "t2"):
        if modality in inputs:
            args += [f"--{modality}", str(inputs[modality])]
    args += ["--out", str(out_dir), "--members", str(int(members)), "--sampler", sampler,
             "--steps", str(int(steps)), "--ensemble", ensemble, "--seed", str(int(seed)), "--device", device]
    if slices is not None:
        args += ["--slices", f"{int(slices[0])}:{int(slices[1])}"]
    args += ["--progress", "json", "--overwrite", *([] if kept else ["--no-overview", "--crop-outputs"])]
    return args


def refine_arguments(model: str | Path, inputs: Mapping[str, str | Path], previous: str | Path, out_dir: str | Path, *,
                     include: Sequence[Sequence[float]] = (), exclude: Sequence[Sequence[float]] = (),
                     strokes: str | Path | None = None, region: str = "wt", reach_mm: float | None = None,
                     seed: int = 0, device: str = "auto") -> list[str]:
    """Command-line arguments of ``python -m DiffSegExtension`` for one refinement of the result in ``previous``.

    :param include: / :param exclude: points in RAS mm, in the inputs' frame (``--include=X,Y,Z``: the ``=``
        keeps a negative X from reading as an option).
    :param strokes: a NIfTI label volume on the inputs' grid (1 = tumour, 2 = not tumour) or None.
    :param reach_mm: ``--reach`` (None: the engine's default).
    Sampling settings are not passed: the engine takes the previous run's.
    """
    args = ["refine", "--model", str(model)]
    for modality in ("flair", "t1", "t1ce", "t2"):
        if modality in inputs:
            args += [f"--{modality}", str(inputs[modality])]
    args += ["--previous", str(previous), "--out", str(out_dir)]
    for kind, points in (("include", include), ("exclude", exclude)):
        args += [f"--{kind}={','.join(repr(float(v)) for v in point)}" for point in points]
    if strokes is not None:
        args += ["--strokes", str(strokes)]
    if reach_mm is not None:
        args += ["--reach", repr(float(reach_mm))]
    args += ["--region", region, "--seed", str(int(seed)), "--device", device, "--progress", "json", "--overwrite",
             "--no-overview", "--crop-outputs"]
    return args


class EngineRunner:
    """Starts ``<python> -m DiffSegExtension <args>`` and reports its events.

    :param python: interpreter (default: :func:`paths.engine_python`, PythonSlicer inside Slicer).
    :param engine_path: folder containing the ``DiffSegExtension`` package (prepended to PYTHONPATH).
    :param module: the ``-m`` module to run (tests may point it at another module).
    :param extra_env: environment variables added for the child.
    :param warm: take over an engine started ahead of time when one waits, and start the next one when
        this run ends (the module must understand ``--wait-for-arguments``, as the engine does).
    """

    def __init__(self, python: str | None = None, engine_path: str | Path | None = None,
                 module: str = "DiffSegExtension", extra_env: Mapping[str, str] | None = None, warm: bool = False):
        self.python = python or engine_python()
        self.engine_path = Path(engine_path) if engine_path else None
        self.module = module
        self.extra_env = dict(extra_env or {})
        self.warm = warm
        self.process: subprocess.Popen | None = None
        self.args: list[str] = []  # the command of this run, as if started cold (a warm engine's own differs)
        self.started_at: float | None = None
        self.last_progress: Progress | None = None
        self._output: EngineOutput | None = None
        self._engine: Waiting | None = None  # the engine taken over (warm), which may go back after the run
        self._stdout_closed = False
        self._run_over = False  # the taken engine reported ``idle``: this run is over, the engine waits again
        self._cancelled = False
        self._outputs: dict = {}
        self._seconds: float | None = None
        self._error: str | None = None

    # -- starting -----------------------------------------------------------------------------
    def command(self, args: Sequence[str]) -> list[str]:
        return [self.python, "-m", self.module, *map(str, args)]

    def _environment(self) -> dict:
        env = dict(os.environ)
        root = str(self.engine_path or engine_root())
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONIOENCODING"] = "utf-8"
        env.update(self.extra_env)
        return env

    def _spawn(self, command: list[str], cwd: str | Path | None, stdin) -> subprocess.Popen:
        kwargs: dict = {}
        if os.name == "nt":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)
        else:
            kwargs["start_new_session"] = True  # own process group: cancel kills the whole tree
        return subprocess.Popen(
            command, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
            errors="replace", bufsize=1, env=self._environment(), cwd=str(cwd) if cwd else None, **kwargs)

    def _warm_key(self) -> tuple:
        return (self.python, self.module, str(self.engine_path or engine_root()), tuple(sorted(self.extra_env.items())))

    def warm_up(self) -> subprocess.Popen | None:
        """Make sure an engine waits, started ahead of time, for the next warm run; returns its process
        (None, doing nothing, when this runner is not warm)."""
        if not self.warm:
            return None
        return WARM_ENGINES.ensure(self._warm_key(), lambda request: self._spawn(
            [self.python, "-m", self.module, WAIT_FLAG, str(request), str(os.getpid())], None,
            subprocess.DEVNULL)).process

    def _take_warm(self, args: Sequence[str], cwd: str | Path | None) -> Waiting | None:
        """Hand ``args`` to a waiting engine (the request file appears at once, complete); None when none waits."""
        waiting = WARM_ENGINES.take(self._warm_key())
        if waiting is None:
            return None
        waiting.output.stderr.clear()  # an engine that stayed: its earlier runs' messages are not this run's
        partial = waiting.request.with_suffix(".partial")
        partial.write_text(json.dumps({"argv": [str(a) for a in args], "cwd": str(cwd) if cwd else None}),
                           encoding="utf-8")
        os.replace(partial, waiting.request)
        return waiting

    def start(self, args: Sequence[str], cwd: str | Path | None = None) -> None:
        """Start the child (or take over a waiting one); returns at once. Raises ``RuntimeError`` if one is
        already running."""
        if self.running:
            raise RuntimeError("The DiffSeg engine is already running.")
        self.args = self.command(args)
        self._engine = self._take_warm(args, cwd) if self.warm else None
        if self._engine is not None:
            self.process, self._output = self._engine.process, self._engine.output
        else:
            self.process = self._spawn(self.args, cwd, subprocess.DEVNULL)
            self._output = EngineOutput(self.process)
        self.started_at = time.monotonic()

    # -- state ----------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True from :meth:`start` until the child has exited *and* its stdout is fully read."""
        if self.process is None or self._run_over:
            return False
        return self.process.poll() is None or not self._stdout_closed

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    # -- events ---------------------------------------------------------------------------------
    def poll(self) -> list[EngineEvent]:
        """Parse every queued line (non-blocking). Call from the thread that owns the UI/scene."""
        events = []
        while self._output is not None and not self._run_over:
            try:
                item = self._output.lines.get_nowait()
            except queue.Empty:
                break
            if item is EOF_MARK:
                self._stdout_closed = True
                if self.warm:
                    self.warm_up()  # for the next run, while the user looks at this one
                continue
            event = parse_line(item)
            if event.kind == "idle" and self._engine is not None:
                self._run_over = True  # what follows on this pipe belongs to the next run
                WARM_ENGINES.give_back(self._warm_key(), self._engine)
                continue
            events.append(self._record(event))
        return events

    def _record(self, event: EngineEvent) -> EngineEvent:
        if event.kind == "progress":
            self.last_progress = event.progress
        elif event.kind == "done":
            self._outputs = dict(event.data.get("outputs") or {})
            self._seconds = event.data.get("seconds")
        elif event.kind == "error":
            self._error = str(event.data.get("message", "unknown error"))
        return event

    def wait(self, on_event: Callable[[EngineEvent], None] | None = None,
             timeout: float | None = None, should_cancel: Callable[[], bool] | None = None) -> EngineResult:
        """Block until the child ends, passing each event to ``on_event`` on this thread.

        :param timeout: seconds; on expiry the child is killed and ``TimeoutError`` raised.
        :param should_cancel: polled about 10× a second; when it returns True the run is cancelled.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.running:
            for event in self.poll():
                if on_event:
                    on_event(event)
            if should_cancel is not None and should_cancel():
                self.cancel()
                break
            if deadline is not None and time.monotonic() > deadline:
                self.cancel()
                raise TimeoutError(f"The DiffSeg engine did not finish within {timeout} s and was stopped.")
            time.sleep(0.05)
        for event in self.poll():
            if on_event:
                on_event(event)
        return self.result()

    def result(self) -> EngineResult:
        """The outcome so far (complete once :attr:`running` is False)."""
        if self._output is not None and not self._run_over:  # an engine that stays keeps reading for the next run
            self._output.join(timeout=5)
        code = 0 if self._run_over else self.process.poll() if self.process else None
        stderr = "\n".join(self._output.stderr) if self._output is not None else ""
        return EngineResult(returncode=code, cancelled=self._cancelled, outputs=dict(self._outputs),
                            seconds=self._seconds, error=self._error, stderr_tail=stderr)

    # -- stopping -------------------------------------------------------------------------------
    def cancel(self) -> None:
        """Kill the child and everything it started, then wait for it to be gone (nothing once the run is over: the
        engine then waits for the next run)."""
        if self.process is None or self._run_over:
            return
        self._cancelled = True
        if self.process.poll() is None:
            kill_process_tree(self.process)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        self._output.join(timeout=5)
        self.poll()
