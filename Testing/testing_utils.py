"""Paths and environment shared by the test suites (importable as ``testing_utils``)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def engine_env() -> dict[str, str]:
    """Environment for a child `python -m DiffSegExtension` that finds the engine from the repository."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env
