"""Engines started ahead of time, one per configuration, waiting for the next run.

``python -m DiffSegExtension --wait-for-arguments REQUEST OWNER_PID`` imports torch and MONAI (4–5 s on a
2-core CPU), then waits for its command in the file REQUEST (a file, not stdin: Slicer starts the engine
through its ``PythonSlicer`` launcher). :class:`~.runner.EngineRunner` with ``warm=True`` takes one over.
An engine that prints ``{"event": "idle"}`` after a run waits for the next one with its models and last
result in memory, and the runner hands it back here (:meth:`_WarmEngines.give_back`); one that ends after
its run is replaced by a fresh one. Each engine's output is read by threads of its own for its whole life
(:class:`EngineOutput`), so successive runs read the same pipes.
Waiting engines end with this process (``atexit``), or by themselves when it is gone or after 30 idle minutes.
"""

from __future__ import annotations

import atexit
import collections
import queue
import subprocess
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .processtree import kill_process_tree

#: Makes ``python -m DiffSegExtension`` wait for its command (see the engine's ``__main__``).
WAIT_FLAG = "--wait-for-arguments"


#: Put on :attr:`EngineOutput.lines` once the process's stdout is closed.
EOF_MARK = object()
#: stdout lines longer than this are cut (a runaway child cannot fill the memory of the reader).
MAX_LINE_CHARS = 100_000


class EngineOutput:
    """A child's stdout lines (queued, then :data:`EOF_MARK`) and the tail of its stderr, read by two daemon threads
    that only queue lines or keep the tail; parsing happens on the caller's thread."""

    def __init__(self, process: subprocess.Popen):
        self.lines: queue.Queue = queue.Queue()
        self.stderr: collections.deque = collections.deque(maxlen=60)
        self.threads = [threading.Thread(target=self._read_stdout, args=(process.stdout,), daemon=True),
                        threading.Thread(target=self._read_stderr, args=(process.stderr,), daemon=True)]
        for thread in self.threads:
            thread.start()

    def _read_stdout(self, stream) -> None:
        try:
            for line in stream:
                self.lines.put(line[:MAX_LINE_CHARS])
        except (OSError, ValueError):
            pass
        finally:
            self.lines.put(EOF_MARK)

    def _read_stderr(self, stream) -> None:
        try:
            for line in stream:
                self.stderr.append(line.rstrip("\r\n")[:2000])
        except (OSError, ValueError):
            pass

    def join(self, timeout: float) -> None:
        for thread in self.threads:
            thread.join(timeout=timeout)


@dataclass
class Waiting:
    """An engine that waits for the file ``request``, with its output readers."""

    process: subprocess.Popen
    request: Path
    output: EngineOutput


class _WarmEngines:
    """At most one engine started ahead of time per (interpreter, module, engine path, environment)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._waiting: dict[tuple, Waiting] = {}

    def take(self, key: tuple) -> Waiting | None:
        """The waiting engine for ``key`` (now no longer waiting), or None if there is none alive."""
        with self._lock:
            waiting = self._waiting.pop(key, None)
        return waiting if waiting is not None and waiting.process.poll() is None else None

    def ensure(self, key: tuple, spawn: Callable[[Path], subprocess.Popen]) -> Waiting:
        """The waiting engine for ``key``; ``spawn(request file)`` starts one unless one is alive."""
        with self._lock:
            waiting = self._waiting.get(key)
            if waiting is None or waiting.process.poll() is not None:
                request = Path(tempfile.gettempdir()) / f"DiffSeg-request-{uuid.uuid4().hex}.json"
                process = spawn(request)
                waiting = self._waiting[key] = Waiting(process, request, EngineOutput(process))
            return waiting

    def give_back(self, key: tuple, engine: Waiting) -> None:
        """``engine`` finished a run and waits again: the next run for ``key`` takes it (it holds that run's
        model and result). One started meanwhile for ``key`` is ended."""
        with self._lock:
            replaced = self._waiting.get(key)
            self._waiting[key] = engine
        if replaced is not None and replaced is not engine:
            _stop(replaced)

    def stop_all(self) -> None:
        """End every waiting engine."""
        with self._lock:
            waiting, self._waiting = list(self._waiting.values()), {}
        for engine in waiting:
            _stop(engine)


def _stop(engine: Waiting) -> None:
    kill_process_tree(engine.process)
    engine.request.unlink(missing_ok=True)


WARM_ENGINES = _WarmEngines()
atexit.register(WARM_ENGINES.stop_all)
