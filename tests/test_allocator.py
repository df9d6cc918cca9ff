"""keep_freed_memory: large allocations come from the heap and stay there after free, instead of fresh mmap'd pages
(glibc); RAFTLAB_KEEP_FREED_MEMORY=0 keeps glibc's defaults."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import ctypes, json, sys
libc = ctypes.CDLL(None)
if not hasattr(libc, "mallinfo2"):
    print(json.dumps(None)); sys.exit()
from raftlab.allocator import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
kept_again = keep_freed_memory() if sys.argv[1] == "keep" else False
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]

class Info(ctypes.Structure):  # mallinfo2 (glibc >= 2.33): hblks = blocks served by mmap, arena = heap bytes
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc.mallinfo2.restype = Info
before = libc.mallinfo2().hblks
block = libc.malloc(64 << 20)
mapped = libc.mallinfo2().hblks - before
libc.free(block)
print(json.dumps({"kept": kept, "kept_again": kept_again, "mapped": mapped,
                  "heap_mib_after_free": libc.mallinfo2().arena >> 20}))
"""


def _probe(mode: str, **env: str) -> dict | None:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, **env})
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_large_allocations_come_from_the_heap_and_stay_once_kept():
    default = _probe("default")
    if default is None:
        pytest.skip("this C library has no mallinfo2 (glibc >= 2.33) to observe the allocator with")
    # glibc's default: a 64 MiB block is its own mapping, unmapped when freed
    assert default["mapped"] == 1 and default["heap_mib_after_free"] < 64
    kept = _probe("keep")
    assert kept["kept"] and kept["kept_again"]  # a second call is a no-op that reports the same
    assert kept["mapped"] == 0 and kept["heap_mib_after_free"] >= 64  # from the heap, and kept there after free
    off = _probe("keep", RAFTLAB_KEEP_FREED_MEMORY="0")
    assert not off["kept"] and off["mapped"] == 1
