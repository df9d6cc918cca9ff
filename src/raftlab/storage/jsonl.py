"""JSONL files: reading with errors that name file and line (bad JSON, bad UTF-8, a line over the size limit, a
torn last line), atomic writes, and crash-safe appends."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from raftlab.storage.files import atomic_write_text

#: Largest JSONL line accepted (bytes); ``RAFTLAB_MAX_LINE_BYTES`` overrides it.
DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024


def max_line_bytes() -> int:
    return int(os.environ.get("RAFTLAB_MAX_LINE_BYTES", DEFAULT_MAX_LINE_BYTES))


class JsonlError(ValueError):
    """A JSONL file that cannot be read; the message starts with ``file:line:``."""



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


def iter_jsonl(path: str | Path, *, allow_torn_tail: bool = False, limit: int | None = None,
               error: type[Exception] = JsonlError, errors: list[str] | None = None,
               max_errors: int | None = None, objects: bool = False) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed JSON)`` for every non-blank line of a JSONL file.

    Problems name ``file:line``: invalid JSON, invalid UTF-8, a line longer than ``limit`` bytes (default
    :func:`max_line_bytes`), with ``objects`` a line that is not a JSON object. They raise ``error`` (a
    :class:`ValueError` subclass by default), or, when an ``errors`` list is given, are appended to it and the line
    is skipped (reading stops once the list holds ``max_errors``). With ``allow_torn_tail`` a last line without its
    newline that is not valid JSON (a writer killed mid-record) is skipped silently.
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
            if objects and not isinstance(obj, dict):
                problem(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
                continue
            yield lineno, obj


def read_jsonl(path: str | Path, *, allow_torn_tail: bool = False,
               error: type[Exception] = JsonlError) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file (see :func:`iter_jsonl`); a line that is not an object is an error."""
    return [obj for _, obj in iter_jsonl(path, allow_torn_tail=allow_torn_tail, error=error, objects=True)]
