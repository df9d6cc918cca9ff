"""The one place for raftlab's file and store mechanics (a leaf module: imports only :mod:`raftlab.corrupt`).

* JSONL: :func:`iter_jsonl` / :func:`read_jsonl` read with errors that name file and line (bad JSON, bad
  UTF-8, a line over the size limit); :func:`write_jsonl` writes atomically; :class:`JsonlAppender` appends
  with an fsync per batch (crash-safe result logs).
* :func:`atomic_write_text`: write a unique temporary file beside the target, fsync, rename, fsync the folder;
  :func:`atomic_directory`: build a folder aside and swap it in atomically.
* :func:`bind_settings`: record a run's settings on first use, or refuse a later run with other settings
  (one exception type, :class:`SettingsMismatch`, for every resumable store).
* :class:`SqliteStore`: the shared set-up of raftlab's SQLite result stores (WAL, ``BEGIN IMMEDIATE``
  transactions, one writer per store); :func:`acquire_lock`: the one-writer file lock (stores, run folders).
* :func:`read_yaml`: a YAML mapping with ``include`` files merged underneath (task and study configs).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

#: Largest JSONL line accepted (bytes); ``RAFTLAB_MAX_LINE_BYTES`` overrides it.
DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024


def max_line_bytes() -> int:
    return int(os.environ.get("RAFTLAB_MAX_LINE_BYTES", DEFAULT_MAX_LINE_BYTES))


class JsonlError(ValueError):
    """A JSONL file that cannot be read; the message starts with ``file:line:``."""


class SettingsMismatch(ValueError):
    """A resumable result store (eval records, rationale store, ...) was made with other settings."""


# ----------------------------------------------------------------------------- writing


def _umask() -> int:
    """The process's umask (reading it means setting it: done under a lock, restored at once)."""
    with _UMASK_GUARD:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


_UMASK_GUARD = threading.Lock()


def fsync_dir(path: str | Path) -> None:
    """Make a rename or creation inside ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a uniquely named temporary file beside it, fsync it, rename it over
    ``path`` and fsync the folder: readers see the old or the new file, never half of one, also after a power
    loss, and two writers never share a temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp creates 0600; a file written in place would follow the umask
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    return path


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, f"cannot swap {a} and {b}: {os.strerror(err)}")


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Build a directory under a unique temporary name and put it at ``path`` only when the block succeeds.

    ``path`` always holds a complete directory (the old one until the new one replaces it in one atomic swap,
    Linux ``renameat2``; elsewhere the old one is moved aside just before the new one is moved in); a failed
    block leaves ``path`` as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700; a shared cache must stay readable by others
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(tmp)
    if not path.exists():
        try:
            os.rename(tmp, path)
            fsync_dir(path.parent)
            return
        except OSError:
            if not path.exists():
                raise
    if not _exchange(tmp, path):
        old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
        os.rename(path, old / "dir")
        os.rename(tmp, path)
        tmp = old
    fsync_dir(path.parent)
    shutil.rmtree(tmp, ignore_errors=True)  # now the old directory


def write_json(path: str | Path, data: Any) -> Path:
    """Atomically write ``data`` as indented JSON."""
    return atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def _line(row: Any) -> str:
    return (row.model_dump_json() if hasattr(row, "model_dump_json") else json.dumps(row, ensure_ascii=False)) + "\n"


def write_jsonl(rows: Iterable[Any], path: str | Path) -> int:
    """Atomically write dicts or pydantic models as JSON lines; returns the number written."""
    lines = [_line(r) for r in rows]
    atomic_write_text(path, "".join(lines))
    return len(lines)


class JsonlAppender:
    """Appends rows to a JSONL file with an fsync per batch: an interrupt loses at most the batch in flight.

    On opening, the file is rewritten with ``existing`` (the rows already read back), so a torn last line left
    by a crash does not stay in it."""

    def __init__(self, path: str | Path, existing: Iterable[Any] = ()) -> None:
        self.path = Path(path)
        write_jsonl(existing, self.path)
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def write_batch(self, rows: Iterable[Any]) -> None:
        self._fh.write("".join(_line(r) for r in rows))
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


# ----------------------------------------------------------------------------- reading


def iter_jsonl(path: str | Path, *, allow_torn_tail: bool = False, limit: int | None = None,
               error: type[Exception] = JsonlError, errors: list[str] | None = None,
               max_errors: int | None = None) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed JSON)`` for every non-blank line of a JSONL file.

    Problems name ``file:line``: invalid JSON, invalid UTF-8, a line longer than ``limit`` bytes (default
    :func:`max_line_bytes`). They raise ``error`` (a :class:`ValueError` subclass by default), or, when an
    ``errors`` list is given, are appended to it and the line is skipped (reading stops once the list holds
    ``max_errors``). With ``allow_torn_tail`` a last line
    without its newline that is not valid JSON (a writer killed mid-record) is skipped silently.
    """
    path = Path(path)
    limit = max_line_bytes() if limit is None else limit

    def problem(message: str) -> None:
        if errors is None:
            raise error(message)
        errors.append(message)

    with open(path, "rb") as fh:
        lineno = 0
        while errors is None or max_errors is None or len(errors) < max_errors:
            raw = fh.readline(limit + 1)
            if not raw:
                return
            lineno += 1
            if len(raw) > limit and not raw.endswith(b"\n"):
                problem(f"{path}:{lineno}: line longer than {limit} bytes (set RAFTLAB_MAX_LINE_BYTES to accept it)")
                while raw and not raw.endswith(b"\n"):  # skip the rest of the line
                    raw = fh.readline(limit + 1)
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                problem(f"{path}:{lineno}: not valid UTF-8 (byte {exc.start + 1} of the line)")
                continue
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                if allow_torn_tail and not raw.endswith(b"\n") and not fh.peek(1):
                    return
                problem(f"{path}:{lineno}: invalid JSON ({exc.msg}, column {exc.colno})")
                continue
            yield lineno, obj


def read_jsonl(path: str | Path, *, allow_torn_tail: bool = False,
               error: type[Exception] = JsonlError) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file (see :func:`iter_jsonl`); a line that is not an object is an error."""
    rows = []
    for lineno, obj in iter_jsonl(path, allow_torn_tail=allow_torn_tail, error=error):
        if not isinstance(obj, dict):
            raise error(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        rows.append(obj)
    return rows


# ----------------------------------------------------------------------------- settings


def settings_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Top-level keys whose values differ."""
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def bind_settings(stored: dict[str, Any] | None, requested: dict[str, Any], *, where: str,
                  save: Callable[[dict[str, Any]], None], comparable: Callable[[dict], dict] = lambda s: s,
                  hint: str = "use another --out directory") -> None:
    """Bind a result store to its settings: save ``requested`` on first use, accept the same settings later,
    and raise :class:`SettingsMismatch` (naming ``where`` and the differing keys) otherwise.

    ``comparable`` maps settings to what must match (e.g. without the teacher's URL)."""
    if stored is None:
        save(requested)
        return
    old, new = comparable(stored), comparable(requested)
    diff = settings_diff(old, new)
    if diff:
        def short(value: Any) -> str:
            text = repr(value)
            return text if len(text) <= 60 else text[:57] + "..."

        details = ", ".join(f"{k}: stored {short(old.get(k))} vs requested {short(new.get(k))}" for k in diff)
        raise SettingsMismatch(f"{where} holds results made with other settings ({details}); {hint}")


def bind_settings_file(path: str | Path, settings: dict[str, Any], **kwargs: Any) -> None:
    """:func:`bind_settings` for settings kept in a JSON file (e.g. an eval directory's ``settings.json``)."""
    from raftlab.corrupt import read_json

    path = Path(path)
    stored = read_json(path, f"delete {path.parent} and run again, or use another --out") if path.exists() else None
    bind_settings(stored, settings, where=str(path.parent), save=lambda s: write_json(path, s), **kwargs)


# ----------------------------------------------------------------------------- YAML with include


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``, merging nested mappings."""
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def merge_includes(cfg: dict[str, Any], base_dir: Path, *, resolve: Callable[[str, Path], Path] | None = None,
                   error: type[Exception] = ValueError, what: str = "config",
                   _stack: tuple[Path, ...] = ()) -> dict[str, Any]:
    """``cfg`` with its ``include`` files (a path or a list; ``resolve(name, base_dir)``, by default relative to
    ``base_dir``) deep-merged underneath it."""
    cfg = dict(cfg)
    includes = cfg.pop("include", None) or []
    merged: dict[str, Any] = {}
    for name in [includes] if isinstance(includes, str) else includes:
        path = resolve(name, base_dir) if resolve else Path(base_dir) / name
        merged = deep_merge(merged, read_yaml(path, resolve=resolve, error=error, what=what, _stack=_stack))
    return deep_merge(merged, cfg)


def read_yaml(path: str | Path, *, resolve: Callable[[str, Path], Path] | None = None,
              error: type[Exception] = ValueError, what: str = "config", _stack: tuple[Path, ...] = ()
              ) -> dict[str, Any]:
    """A YAML mapping with its ``include`` merged underneath (see :func:`merge_includes`); problems (missing file,
    invalid YAML, not a mapping, circular include) raise ``error`` naming the file."""
    import yaml

    path = Path(path).resolve()
    if path in _stack:
        raise error(f"{path}: circular include ({' -> '.join(p.name for p in (*_stack, path))})")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise error(f"{path}: no such {what} file") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not valid UTF-8 (byte {exc.start + 1})") from None
    except yaml.YAMLError as exc:
        from raftlab.corrupt import yaml_problem

        raise error(f"{path}: {yaml_problem(exc)}; fix the file") from None
    if not isinstance(raw, dict):
        raise error(f"{path}: a {what} must be a YAML mapping")
    return merge_includes(raw, path.parent, resolve=resolve, error=error, what=what, _stack=(*_stack, path))


# ----------------------------------------------------------------------------- SQLite


class InUse(OSError):
    """A store or run directory is held by another raftlab process (the message names its pid, ``holder``)."""

    def __init__(self, message: str, holder: str = "unknown") -> None:  # one argument when unpickled
        super().__init__(message)
        self.holder = holder


class StoreCorrupt(ValueError):
    """A SQLite store that cannot be read (the message names the file and what to do)."""


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


class SqliteStore:
    """Base of raftlab's SQLite result stores: WAL journal, one writer (a lock file beside the store, see
    :func:`acquire_lock`), and :meth:`transaction` for every write (``BEGIN IMMEDIATE`` ... ``COMMIT``: a result
    is stored whole or not at all). A store that cannot be read raises :class:`StoreCorrupt`. Subclasses set
    :attr:`SCHEMA`."""

    SCHEMA = ""
    SYNCHRONOUS = "FULL"
    #: the connection class (tests inject faults through it)
    CONNECTION: type[sqlite3.Connection] = sqlite3.Connection

    def __init__(self, path: str | Path, *, writer: bool = True) -> None:
        """Open (or create) the store. ``writer=False`` opens an existing store to read only, without the writer
        lock (e.g. stats of a run in progress: WAL lets readers in beside the writer)."""
        self.path = Path(path)
        self._unlock: Callable[[], None] | None = None
        if writer:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._unlock = acquire_lock(self.path.with_name(self.path.name + ".lock"), f"store {self.path}")
        elif not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such store")
        try:
            self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None, factory=self.CONNECTION)
        except sqlite3.Error as exc:
            self.close()
            raise StoreCorrupt(f"{self.path}: cannot open this SQLite store ({exc})") from None
        try:
            ok = self.db.execute("PRAGMA quick_check").fetchone()
            if ok is None or ok[0] != "ok":
                raise sqlite3.DatabaseError(ok[0] if ok else "no answer to quick_check")
            if writer:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute(f"PRAGMA synchronous={self.SYNCHRONOUS}")
                self.db.executescript(self.SCHEMA)
        except sqlite3.OperationalError as exc:  # busy, read-only, disk full, I/O: not a damaged file
            self.close()
            raise OSError(f"{self.path}: cannot open this SQLite store ({exc})") from exc
        except sqlite3.DatabaseError as exc:
            self.close()
            raise StoreCorrupt(f"{self.path}: damaged SQLite store ({exc}); move it aside (e.g. mv {self.path} "
                               f"{self.path}.broken) and rerun to start it afresh") from None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: ``BEGIN IMMEDIATE`` (takes the write lock up front), ``COMMIT`` on success,
        ``ROLLBACK`` on any error (nothing of it is stored). Inside another transaction it is a savepoint, so that a
        failed inner block leaves nothing either."""
        begin, commit, undo = (("SAVEPOINT inner", "RELEASE inner", ("ROLLBACK TO inner", "RELEASE inner"))
                               if self.db.in_transaction else ("BEGIN IMMEDIATE", "COMMIT", ("ROLLBACK",)))
        self.db.execute(begin)
        try:
            yield self.db
            self.db.execute(commit)
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                for statement in undo:
                    self.db.execute(statement)
            raise

    def close(self) -> None:
        if getattr(self, "db", None) is not None:
            self.db.close()
            self.db = None  # type: ignore[assignment]
        if self._unlock is not None:
            self._unlock()
            self._unlock = None  # type: ignore[assignment]

    def __enter__(self):  # noqa: ANN204
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
