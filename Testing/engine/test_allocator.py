"""The CLI keeps freed tensor memory in the process (allocator.py): no page faults per repeated pass."""

import subprocess
import sys

import pytest

# Like a network pass: 8 activations of 16 MB alive at once, then all freed. Prints the minor page
# faults of the last 10 of 15 rounds (after the first have grown the heap).
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
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    one_pass()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", _PASSES, mode], capture_output=True, text=True, check=True).stdout
    applied, faults = out.split()
    return applied == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc tuning applies on Linux only")
def test_tuned_malloc_stops_refaulting_freed_tensor_memory():
    applied, tuned = _faults("tuned")
    _, default = _faults("default")
    assert applied
    # default: the freed heap top is trimmed, so each round faults most of its 128 MB in again (32,768
    # pages of 4 KiB); tuned: the heap keeps them
    assert default > 10 * 16000
    assert tuned < default / 20


def test_cli_applies_it_before_any_command(monkeypatch):
    from DiffSegExtension import cli

    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(True))
    assert cli.main(["models"]) == 0
    assert calls == [True]
