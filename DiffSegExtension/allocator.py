"""Keep freed tensor memory in the process instead of handing it back to the OS after every network pass.

A CPU pass over a batch allocates and frees activations of 5–30 MB each. With glibc's defaults the freed
top of the heap is trimmed (``M_TRIM_THRESHOLD``) and large blocks are mmap'd afresh, so every pass
faults the same pages in again and the kernel zeroes them: ~74,000 page faults (≈ 300 MB zeroed) per pass
of 32 brain crops, about a fifth of the pass's time (``benchmarks/bench_speed.py``, allocator table).
Raising the trim and mmap thresholds makes the heap keep those pages; the peak resident memory is
unchanged (the same tensors are alive at the peak), only its release is deferred to the process's end.

Process-wide, so it is called by the ``diffseg`` command line (a process of its own, also when Slicer
runs it), never on import. Once sampling is done, :func:`release_freed_memory` hands the kept pages back
before the whole-volume maps are built, so they do not add to the peak. Only glibc (Linux) exposes these
knobs; elsewhere both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt parameters from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

#: Freed heap kept before trimming, extra heap requested per growth, and the largest request served
#: from the heap (glibc's maximum on 64-bit: bigger blocks are always mmap'd).
TRIM_THRESHOLD = 1 << 30
TOP_PAD = 256 << 20
MMAP_THRESHOLD = 32 << 20


def _glibc_function(name: str):
    """glibc's ``name`` (a ctypes function), or None off Linux or in other C libraries (musl has no mallopt)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


def keep_freed_memory() -> bool:
    """Tune glibc's malloc as above. Returns whether it applied (False off glibc)."""
    mallopt = _glibc_function("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in
               ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD), (_M_TOP_PAD, TOP_PAD)))


def release_freed_memory() -> bool:
    """Return the heap's free pages to the OS now (glibc's ``malloc_trim``). Returns whether it ran."""
    trim = _glibc_function("malloc_trim")
    if trim is None:
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
    return True
