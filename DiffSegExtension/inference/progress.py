"""Progress reporting: a tqdm bar for people, one JSON object per line for programs (the Slicer module).

JSON protocol on stdout, one object per line, flushed:
  {"event": "progress", "done": int, "total": int, "elapsed_s": float, "eta_s": float|null, "message": str}
  {"event": "log", "message": str}
  {"event": "done", "outputs": {name: path}, "seconds": float}
  {"event": "error", "message": str}
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO


class Progress:
    """Counts network passes (sampler steps over all batches) and reports them."""

    def __init__(self, mode: str = "tqdm", stream: TextIO | None = None):
        if mode not in ("tqdm", "json", "none"):
            raise ValueError(f"progress mode must be tqdm, json or none, got {mode}")
        self.mode = mode
        self.stream = stream or sys.stdout
        self.total = 0
        self.done = 0
        self.message = ""
        self._start = time.perf_counter()
        self._bar = None

    def emit(self, event: str, **fields: Any) -> None:
        if self.mode == "json":
            self.stream.write(json.dumps({"event": event, **fields}) + "\n")
            self.stream.flush()

    def log(self, message: str) -> None:
        if self.mode == "json":
            self.emit("log", message=message)
        elif self.mode == "tqdm":
            from tqdm import tqdm

            tqdm.write(message, file=sys.stderr)

    def warn(self, message: str) -> None:
        """A warning people must see whatever the mode: a ``log`` event in json mode, else a line on stderr."""
        if self.mode == "json":
            self.emit("log", message=f"warning: {message}")
        else:
            print(f"warning: {message}", file=sys.stderr, flush=True)

    def start(self, total: int, message: str) -> None:
        """Begin a stage of ``total`` steps."""
        self.total, self.done, self.message = int(total), 0, message
        self._start = time.perf_counter()
        if self.mode == "tqdm":
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=message, unit="pass", file=sys.stderr, dynamic_ncols=True)
        self._report()

    def retotal(self, total: int) -> None:
        """The stage turned out to need ``total`` steps in all (an adaptive ensemble knows after its screen)."""
        self.total = int(total)
        if self._bar is not None:
            self._bar.total = self.total
            self._bar.refresh()
        self._report()

    def advance(self, steps: int = 1) -> None:
        self.done += steps
        if self._bar is not None:
            self._bar.update(steps)
        self._report()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _report(self) -> None:
        if self.mode != "json":
            return
        elapsed = time.perf_counter() - self._start
        eta = elapsed / self.done * (self.total - self.done) if self.done else None
        self.emit("progress", done=self.done, total=self.total, elapsed_s=round(elapsed, 3),
                  eta_s=None if eta is None else round(eta, 1), message=self.message)
