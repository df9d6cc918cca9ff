"""One writer per store and per run folder: an OS file lock (``flock``) that the kernel releases when its holder
dies, so a crash never leaves a stale lock."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path


class InUse(OSError):
    """A store or run directory is held by another raftlab process (the message names its pid, ``holder``)."""

    def __init__(self, message: str, holder: str = "unknown") -> None:  # one argument when unpickled
        super().__init__(message)
        self.holder = holder


#: Locks this process holds: path -> [fd, pid, count] (re-entrant within a process, never across a fork).
_HELD: dict[str, list[int]] = {}
_HELD_GUARD = threading.Lock()


def acquire_lock(path: str | Path, what: str, timeout: float = 0.0, poll: float = 0.1) -> Callable[[], None]:
    """Hold ``path`` (a lock file) for one writer: an OS file lock (``flock``), released by the kernel when the
    holder dies, so a crash never leaves a stale lock. Another process waits up to ``timeout`` seconds, then gets
    :class:`InUse` naming the holder's pid; this process may take it again (counted). Returns the function that
    releases it."""
    import fcntl

    key = os.path.realpath(path)
    fd = None
    deadline = time.monotonic() + timeout
    while True:
        with _HELD_GUARD:  # each attempt is atomic with this process's registry; the wait between them is not held
            held = _HELD.get(key)
            if held is not None and held[1] == os.getpid():
                if fd is not None:
                    os.close(fd)
                held[2] += 1
                return lambda: _release(key)
            if fd is None:
                fd = os.open(key, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                    os.close(fd)
                    raise InUse(f"{what} is in use by another raftlab process (pid {holder}); wait for it to "
                                f"finish or stop it, or use another output folder (lock: {key})", holder) from None
            except OSError as exc:
                os.close(fd)
                raise OSError(f"{key}: cannot take the one-writer lock of {what} ({exc.strerror}); this file "
                              "system may not support flock: put the run or store on a local disk") from None
            else:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                _HELD[key] = [fd, os.getpid(), 1]
                return lambda: _release(key)
        time.sleep(poll)


def _release(key: str) -> None:
    with _HELD_GUARD:
        held = _HELD.get(key)
        if held is None or held[1] != os.getpid():
            return
        held[2] -= 1
        if held[2] == 0:
            del _HELD[key]
            os.close(held[0])  # closing the descriptor releases the flock
