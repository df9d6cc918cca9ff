"""Keep freed memory in the process (glibc malloc), so that each CPU training step does not fault in fresh pages.

A CPU training step allocates and frees the same large buffers every step (logits, attention matrices, bf16
copies of the weights, gradients). glibc gives a large block its own ``mmap`` (above a threshold that starts at
128 KiB and adapts up to 32 MiB) and unmaps it when freed, so the next step's buffers are new pages that the
kernel must zero on first touch (``benchmarks/bench_train_memory.py`` measures what keeping them saves).
:func:`keep_freed_memory` serves large allocations of the main thread (where torch's CPU forward and backward
allocate) from the heap and stops trimming it, so freed buffers are reused. The price: the process holds its peak
memory until it exits. That suits a process that trains and ends (``raftlab train``, a study's stage process),
not a long-lived host, so raftlab calls it only there, and only without CUDA. ``RAFTLAB_KEEP_FREED_MEMORY=0``
turns it off; on other C libraries it is a no-op.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

logger = logging.getLogger(__name__)

#: glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4
#: (parameter, value): no mmap'd blocks; never return the heap's free top to the OS (-1, mallopt(3)); grow the heap
#: 256 MiB at a time (fewer, larger brk calls)
SETTINGS = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, -1), (M_TOP_PAD, 256 << 20))
#: Set to 0 to keep glibc's defaults.
ENV = "RAFTLAB_KEEP_FREED_MEMORY"

_done = False


def keep_freed_memory() -> bool:
    """Serve large allocations from the heap and keep freed memory for reuse (once per process; glibc on a host
    without CUDA only). Returns whether the settings are in effect."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux") or os.environ.get(ENV, "1") == "0":
        return False
    import torch

    if torch.cuda.is_available():  # GPU steps do not allocate their buffers here
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    results = [mallopt(param, value) == 1 for param, value in SETTINGS]  # every setting tried, each reported
    _done = all(results)
    logger.debug("malloc keeps freed memory: %s", dict(zip(("mmap_max", "trim_threshold", "top_pad"), results)))
    return _done
