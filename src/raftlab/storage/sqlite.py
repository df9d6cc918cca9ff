"""The shared set-up of raftlab's SQLite result stores: WAL journal, one writer, every write in a transaction."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

from raftlab.storage.locks import acquire_lock


class StoreCorrupt(ValueError):
    """A SQLite store that cannot be read (the message names the file and what to do)."""


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
