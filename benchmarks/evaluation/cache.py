"""Finished steps of an evaluation report, kept on disk so that a run killed part-way resumes.

The full report takes hours on a 2-core CPU, longer than a working session may last. Each step (one case's
full-volume run, one case's baseline, one case under one sequence subset and method) is stored when it
finishes: ``<key>.json`` (rows and other JSON values) and, for a full-volume run, ``<key>.npz`` (the figure
slice's arrays; loaded with ``allow_pickle=False``). Every file records the run's fingerprint (model and
baseline weights, settings, MC-dropout passes); a file with another fingerprint is ignored and recomputed,
so changing a setting never mixes old numbers in. Files are written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from benchmarks.evaluation.measure import VolumeRun
from DiffSegExtension.atomic import atomic_path, write_text_atomic


class StepCache:
    """``folder`` of finished steps for the run described by ``fingerprint`` (JSON-able)."""

    def __init__(self, folder: Path, fingerprint: dict[str, Any]):
        self.folder = Path(folder)
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True, default=str))
        self.reused: list[str] = []
        self.computed: list[str] = []

    def rows(self, key: str, compute: Callable[[], list[dict]]) -> list[dict]:
        """The stored rows of ``key``, or ``compute()``'s, stored."""
        stored = self._load(key)
        if stored is not None:
            return stored["value"]
        value = compute()
        self._store(key, value)
        return value

    def volume(self, key: str, compute: Callable[[], VolumeRun]) -> VolumeRun:
        """The stored full-volume run of ``key``, or ``compute()``'s, stored (figure arrays in ``key``.npz)."""
        stored = self._load(key)
        npz = self.folder / f"{key}.npz"
        if stored is not None and npz.is_file():
            value = stored["value"]
            with np.load(npz, allow_pickle=False) as arrays:
                figure = {**value["figure"], **{name: arrays[name] for name in arrays.files}}
            figure["modalities"], figure["regions"] = tuple(figure["modalities"]), tuple(figure["regions"])
            rows = {int(k): v for k, v in value["rows"].items()}
            return VolumeRun(value["case"], rows, value["source_slices"], value["slice_axis"], figure)
        run = compute()
        arrays = {k: v for k, v in run.figure.items() if isinstance(v, np.ndarray)}
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(npz) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
        figure = {k: v for k, v in run.figure.items() if k not in arrays}
        self._store(key, {"case": run.case, "rows": run.rows, "source_slices": run.source_slices,
                          "slice_axis": run.slice_axis, "figure": figure})
        return run

    def _load(self, key: str) -> dict | None:
        path = self.folder / f"{key}.json"
        if path.is_file():
            stored = json.loads(path.read_text(encoding="utf-8"))
            if stored.get("fingerprint") == self.fingerprint:
                self.reused.append(key)
                return stored
        return None

    def _store(self, key: str, value: Any) -> None:
        self.computed.append(key)
        self.folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.folder / f"{key}.json",
                          json.dumps({"fingerprint": self.fingerprint, "value": value}, default=_plain))


def _plain(value: Any) -> Any:
    """JSON for numpy scalars and arrays (a NaN metric is written as NaN, which Python's json reads back)."""
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in the report cache")
