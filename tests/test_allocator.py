"""keep_freed_memory: large allocations come from the reusable heap instead of fresh mmap'd pages (glibc)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import ctypes, sys
from raftlab.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory() and keep_freed_memory()  # a second call is a no-op that reports the same
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]

class Info(ctypes.Structure):  # mallinfo2 (glibc >= 2.33): hblks = chunks served by mmap
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc.mallinfo2.restype = Info
before = libc.mallinfo2().hblks
block = libc.malloc(64 << 20)
print(libc.mallinfo2().hblks - before)
libc.free(block)
"""


def _mmapped_blocks(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_large_allocations_come_from_the_heap_once_kept():
    try:
        default = _mmapped_blocks("default")
    except subprocess.CalledProcessError as exc:  # no mallinfo2: a libc other than glibc >= 2.33
        pytest.skip(f"this C library has no mallinfo2 ({exc.stderr.strip().splitlines()[-1]})")
    assert default == 1  # glibc's default: a 64 MiB block is its own mapping, unmapped when freed
    assert _mmapped_blocks("keep") == 0  # kept: from the heap, reused after free

