"""The CLI keeps freed tensor memory in the process (allocator.py): no page faults per repeated pass."""

import statistics
import subprocess
import sys

import pytest

# Like a network pass: 8 activations of 16 MB alive at once, then all freed. Prints whether the tuning
# applied, then the minor page faults of each of 10 rounds (after 5 rounds have grown the heap).
_PASSES = """
import resource, sys, torch
from DiffSegExtension.allocator import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "tuned" else False
def one_pass():
    alive = [torch.ones(4 << 20)]
    for _ in range(7):
        alive.append(alive[-1] * 2)
    return float(alive[-1][-1])
for _ in range(5):
    one_pass()
faults = []
for _ in range(10):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    one_pass()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(applied, *faults)
"""


def _faults(mode: str) -> tuple[bool, float]:
    """(applied, median page faults per round)."""
    out = subprocess.run([sys.executable, "-c", _PASSES, mode], capture_output=True, text=True, check=True).stdout
    applied, *faults = out.split()
    return applied == "True", statistics.median(int(f) for f in faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc tuning applies on Linux only")
def test_tuned_malloc_stops_refaulting_freed_tensor_memory():
    # With glibc's defaults the freed heap top is usually trimmed, so most runs fault all 128 MB in again
    # each round (32,768 pages of 4 KiB; some runs keep it by chance of layout). Tuned, no run may.
    runs = [_faults("tuned") for _ in range(3)]
    assert all(applied for applied, _ in runs)
    assert all(faults < 1000 for _, faults in runs), runs
    assert max(_faults("default")[1] for _ in range(4)) > 16000, "the defaults refault (else this test shows nothing)"


# Tuned, the freed 128 MB of a pass stay resident until release_freed_memory hands them back.
_RELEASE = """
import torch
from DiffSegExtension.allocator import keep_freed_memory, release_freed_memory
def resident_mib():
    return int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1]) / 1024
assert keep_freed_memory()
alive = [torch.ones(4 << 20)]
for _ in range(7):
    alive.append(alive[-1] * 2)
del alive
kept = resident_mib()
assert release_freed_memory()
print(kept - resident_mib())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc tuning applies on Linux only")
def test_release_hands_the_kept_memory_back():
    released = float(subprocess.run([sys.executable, "-c", _RELEASE], capture_output=True, text=True,
                                    check=True).stdout)
    assert released > 100, f"only {released:.0f} MiB of the freed 128 MiB went back to the OS"


def test_cli_applies_it_before_any_command(monkeypatch):
    from DiffSegExtension import cli

    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(True))
    assert cli.main(["models"]) == 0
    assert calls == [True]
