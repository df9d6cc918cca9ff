"""Reading back the per-question eval records (``records.jsonl``; written with :class:`raftlab.storage.JsonlAppender`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raftlab.storage import read_jsonl


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Records of a JSONL file (none if it does not exist); a torn last line (crash mid-write) is dropped, any
    other bad line is an error naming file and line."""
    path = Path(path)
    return read_jsonl(path, allow_torn_tail=True) if path.exists() else []
