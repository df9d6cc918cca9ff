"""Keep freed memory in the process (glibc malloc), so that each training step does not fault in fresh pages.

A CPU training step allocates and frees the same large buffers every step (logits, attention matrices, bf16
copies of the weights, gradients). By default glibc hands every allocation above 128 KiB-32 MiB straight to
``mmap`` and returns it with ``munmap`` when freed, so the next step's buffers are new pages that the kernel must
zero on first touch (benchmarks/bench_train_memory.py measures what keeping them saves).
:func:`keep_freed_memory` serves large allocations from the heap and stops trimming it, so freed buffers are
reused. The price: the process holds its peak memory until it exits, which is right for a stage process or a
training run, not for a long-lived library host, so raftlab calls it only there. Other C libraries: a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

logger = logging.getLogger(__name__)

#: glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4
#: Heap growth per request and the free memory kept at its top (bytes): fewer, larger brk calls.
TOP_PAD = 256 << 20
#: -1: glibc never returns the heap's free top to the OS (mallopt(3))
TRIM_THRESHOLD = -1

_done = False


def keep_freed_memory() -> bool:
    """Serve large allocations from the heap and keep freed memory for reuse (once per process; glibc only).
    Returns whether the settings are in effect."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = all(mallopt(param, value) == 1 for param, value in
             ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD)))
    logger.debug("malloc keeps freed memory: %s", ok)
    _done = ok
    return ok
