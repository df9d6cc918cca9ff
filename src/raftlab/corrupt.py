"""Damaged files a user may hold (a model or adapter folder, a run's JSON, a config): :class:`CorruptFile` names
the file and what to do about it, so that the CLI can print one line (exit 2) instead of a library's message that
names neither (``Expecting value: line 2 column 1``, ``SafetensorError: incomplete metadata``).

A leaf module (standard library only), so that every layer may use it.
"""

from __future__ import annotations

import contextlib
import json
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


class CorruptFile(ValueError):
    """A file that exists but cannot be read as what it should be; the message names it and the fix."""


def read_json(path: str | Path, fix: str) -> Any:
    """The JSON value in ``path``; invalid UTF-8 or JSON raises :class:`CorruptFile` naming it and ``fix`` (a
    missing file raises :class:`FileNotFoundError` as usual)."""
    path = Path(path)
    raw = path.read_bytes()
    problem = json_problem(raw)
    if problem:
        raise CorruptFile(f"{path}: {problem}; {fix}")
    return json.loads(raw)


def json_problem(raw: bytes) -> str | None:
    """What is wrong with ``raw`` as a JSON document (None: nothing)."""
    try:
        json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return f"not valid UTF-8 (byte {exc.start + 1})"
    except json.JSONDecodeError as exc:
        return "empty" if not raw.strip() else f"not valid JSON (line {exc.lineno}, column {exc.colno})"
    return None


def yaml_problem(exc: Exception) -> str:
    """A YAML parse error in one line: its problem and where (PyYAML's own message spans several lines)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return f"invalid YAML: {problem}{where}"


#: The largest header the safetensors library accepts (bytes); a larger length is not a header at all.
MAX_SAFETENSORS_HEADER = 100_000_000


def safetensors_problem(path: Path) -> str | None:
    """What is wrong with a ``*.safetensors`` file's layout (None: nothing): an unreadable header, or tensor data
    the file does not fully hold (a truncated download or copy). Reads the header only."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return f"truncated safetensors file ({size} bytes)"
        (n,) = struct.unpack("<Q", head)
        if n > MAX_SAFETENSORS_HEADER:
            return "not a safetensors file (unreadable header)"
        if n > size - 8:
            return f"truncated safetensors file ({size} bytes; its header alone needs {n + 8})"
        try:
            header = json.loads(fh.read(n))
        except ValueError:
            return "damaged safetensors file (unreadable header)"
    if not isinstance(header, dict):
        return "damaged safetensors file (unreadable header)"
    ends = [v["data_offsets"][-1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)
            and isinstance(v.get("data_offsets"), list) and v["data_offsets"]
            and isinstance(v["data_offsets"][-1], int)]
    need = 8 + n + max(ends, default=0)
    if size < need:
        return f"truncated safetensors file ({size} bytes of {need})"
    if size > need:
        return f"damaged safetensors file ({size} bytes; its header describes {need})"
    return None


def folder_problem(folder: str | Path) -> str | None:
    """The first damaged file of a model or adapter folder, as ``"<file>: <what is wrong>"`` (None: none found):
    a ``*.json`` file (config, tokenizer, adapter config) that is not valid JSON, or a ``*.safetensors`` file that
    :func:`safetensors_problem` finds damaged."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    for path in sorted(folder.glob("*.json")):
        problem = json_problem(path.read_bytes())
        if problem:
            return f"{path}: {problem}"
    for path in sorted(folder.glob("*.safetensors")):
        problem = safetensors_problem(path)
        if problem:
            return f"{path}: {problem}"
    return None


@contextlib.contextmanager
def loading(folder: str | Path | Callable[[], Path | None] | None, fix: str | Callable[[Path], str]
            ) -> Iterator[None]:
    """Run a library's load of ``folder`` (transformers, peft, safetensors). If it fails and a file of the folder is
    damaged (:func:`folder_problem`), raise :class:`CorruptFile` naming that file and ``fix`` instead of the
    library's error, which seldom names the file; any other failure passes through unchanged. ``folder`` and
    ``fix`` may be callables (of nothing / of the folder), evaluated only after a failure."""
    try:
        yield
    except Exception as exc:
        try:
            where = folder() if callable(folder) else folder
            problem = folder_problem(where) if where is not None else None
        except OSError:
            problem = None
        if problem:
            raise CorruptFile(f"{problem}; {fix(Path(where)) if callable(fix) else fix}") from exc
        raise
