"""The one place for raftlab's file and store mechanics (a leaf module: imports nothing from raftlab).

* JSONL: :func:`iter_jsonl` / :func:`read_jsonl` read with errors that name file and line (bad JSON, bad
  UTF-8, a line over the size limit); :func:`write_jsonl` writes atomically; :class:`JsonlAppender` appends
  with an fsync per batch (crash-safe result logs).
* :func:`atomic_write_text`: write to a temporary file beside the target, then rename (never a half file).
* :func:`bind_settings`: record a run's settings on first use, or refuse a later run with other settings
  (one exception type, :class:`SettingsMismatch`, for every resumable store).
* :class:`SqliteStore`: the shared set-up of raftlab's SQLite result stores (WAL, one transaction per write).
* :func:`read_yaml`: a YAML mapping with ``include`` files merged underneath (task and study configs).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
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


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename (readers never see half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Build a directory under a temporary name and move it to ``path`` only when the block succeeds (a half-built
    directory never appears under ``path``)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    yield tmp
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)


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
    path = Path(path)
    stored = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
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
        raise error(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise error(f"{path}: a {what} must be a YAML mapping")
    return merge_includes(raw, path.parent, resolve=resolve, error=error, what=what, _stack=(*_stack, path))


# ----------------------------------------------------------------------------- SQLite


class SqliteStore:
    """Base of raftlab's SQLite result stores: WAL journal, autocommit connection (``with self.db:`` is one
    transaction per result), schema created on open. Subclasses set :attr:`SCHEMA`."""

    SCHEMA = ""
    SYNCHRONOUS = "FULL"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={self.SYNCHRONOUS}")
        self.db.executescript(self.SCHEMA)

    def close(self) -> None:
        self.db.close()

    def __enter__(self):  # noqa: ANN204
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
