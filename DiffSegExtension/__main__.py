"""``python -m DiffSegExtension ...`` — the way the Slicer module starts the engine.

``python -m DiffSegExtension --wait-for-arguments REQUEST [OWNER_PID]`` is an engine started ahead of time:
it imports torch and MONAI (seconds of start-up), then waits for the file REQUEST,
``{"argv": [...], "cwd": ...}``, deletes it and runs that command as if it had been given on the command
line. A file, not stdin, because Slicer starts the engine through its ``PythonSlicer`` launcher. After a
successful run it prints ``{"event": "idle"}`` and waits for the next request in the same file, keeping
its models and last result in memory (:mod:`DiffSegExtension.session`); a failed run ends the process
with the run's exit status. It exits quietly after ``IDLE_LIMIT_S`` without a request, or (POSIX) once
the process OWNER_PID is gone.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

from DiffSegExtension import session
from DiffSegExtension.allocator import release_freed_memory
from DiffSegExtension.cli import main, run_and_exit

WAIT_FLAG = "--wait-for-arguments"
IDLE_LIMIT_S = 30 * 60
POLL_S = 0.05


def _alive(pid: int | None) -> bool:
    if pid is None or os.name == "nt":  # Windows' os.kill(pid, 0) would terminate the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        pass
    return True


def wait_for_arguments(request: Path, owner: int | None) -> list[str] | None:
    """The command line in ``request`` once it appears (after changing to its folder); ``None`` when none came
    within ``IDLE_LIMIT_S`` or the owner is gone."""
    deadline = time.monotonic() + IDLE_LIMIT_S
    while not request.exists():
        if time.monotonic() > deadline or not _alive(owner):
            return None
        time.sleep(POLL_S)
    wanted = json.loads(request.read_text(encoding="utf-8"))
    request.unlink()
    if wanted.get("cwd"):
        os.chdir(wanted["cwd"])
    return [str(a) for a in wanted["argv"]]


def _release_run_memory() -> None:
    """While it waits, the engine holds its model and last result, not the run's peak: freed heap pages go back to
    the OS, and on a GPU the blocks torch's allocator keeps cached."""
    release_freed_memory()
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def serve(request: Path, owner: int | None) -> None:
    """Run the requests that arrive in ``request``, one after another, until one fails or none comes."""
    session.enable()
    home = os.getcwd()
    while (argv := wait_for_arguments(request, owner)) is not None:
        code = main(argv)  # an exception ends the process here, with its traceback
        if code != 0:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        os.chdir(home)  # a request without a folder runs here; the run's folder is the caller's to delete
        _release_run_memory()
        print(json.dumps({"event": "idle"}), flush=True)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    if sys.argv[1:2] == [WAIT_FLAG]:
        serve(Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else None)
    run_and_exit()
