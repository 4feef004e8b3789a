"""Engines started ahead of time, one per configuration, waiting for the next run.

``python -m DiffSegExtension --wait-for-arguments REQUEST OWNER_PID`` imports torch and MONAI (4–5 s on a
2-core CPU), then waits for its command in the file REQUEST (a file, not stdin: Slicer starts the engine
through its ``PythonSlicer`` launcher). :class:`~.runner.EngineRunner` with ``warm=True`` takes one over.
Waiting engines end with this process (``atexit``), or by themselves when it is gone or after 30 idle minutes.
"""

from __future__ import annotations

import atexit
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


@dataclass
class _Waiting:
    process: subprocess.Popen
    request: Path  # the file it waits for


class _WarmEngines:
    """At most one engine started ahead of time per (interpreter, module, engine path, environment)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._waiting: dict[tuple, _Waiting] = {}

    def take(self, key: tuple) -> _Waiting | None:
        """The waiting engine for ``key`` (now no longer waiting), or None if there is none alive."""
        with self._lock:
            waiting = self._waiting.pop(key, None)
        return waiting if waiting is not None and waiting.process.poll() is None else None

    def ensure(self, key: tuple, spawn: Callable[[Path], subprocess.Popen]) -> _Waiting:
        """The waiting engine for ``key``; ``spawn(request file)`` starts one unless one is alive."""
        with self._lock:
            waiting = self._waiting.get(key)
            if waiting is None or waiting.process.poll() is not None:
                request = Path(tempfile.gettempdir()) / f"DiffSeg-request-{uuid.uuid4().hex}.json"
                waiting = self._waiting[key] = _Waiting(spawn(request), request)
            return waiting

    def stop_all(self) -> None:
        """End every waiting engine."""
        with self._lock:
            waiting, self._waiting = list(self._waiting.values()), {}
        for engine in waiting:
            kill_process_tree(engine.process)
            engine.request.unlink(missing_ok=True)


WARM_ENGINES = _WarmEngines()
atexit.register(WARM_ENGINES.stop_all)
