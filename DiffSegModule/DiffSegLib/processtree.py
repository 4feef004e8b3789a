"""Kill a child process and everything it started (cancel; a waiting engine at exit)."""

from __future__ import annotations

import collections
import os
import signal
import subprocess


def _descendants(pid: int) -> list[int]:
    """Process IDs of every descendant of ``pid`` (POSIX, from ``ps``; Slicer ships no psutil).

    Catches children that left the process group (``setsid``), which ``killpg`` misses. Windows
    needs none of this: ``taskkill /T`` walks the tree itself.
    """
    if os.name == "nt":
        return []
    try:
        table = subprocess.run(["ps", "-A", "-o", "pid=", "-o", "ppid="], capture_output=True, text=True,
                               timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    children: dict[int, list[int]] = collections.defaultdict(list)
    for line in table.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit():
            children[int(fields[1])].append(int(fields[0]))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def kill_process_tree(process: subprocess.Popen) -> None:
    """Kill ``process`` and its descendants (PythonSlicer is a launcher: its child does the work)."""
    children = _descendants(process.pid)
    if os.name == "nt":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True, check=False)
    else:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the child leads its own process group
        except (ProcessLookupError, PermissionError):
            pass
    for pid in children:  # anything that left the group
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    if process.poll() is None:
        process.kill()
