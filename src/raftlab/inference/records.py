"""Reading back the per-question eval records (``records.jsonl``; written with :class:`raftlab.storage.JsonlAppender`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raftlab.corrupt import CorruptFile
from raftlab.storage import JsonlError, read_jsonl

#: What to do about a damaged line of eval records: a resumed eval recomputes the questions it lacks.
FIX_RECORD = "delete that line and evaluate again with the same --out to recompute it"


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Records of a JSONL file (none if it does not exist); a torn last line (crash mid-write) is dropped, any
    other bad line is a :class:`~raftlab.corrupt.CorruptFile` naming file, line and :data:`FIX_RECORD`."""
    path = Path(path)
    try:
        return read_jsonl(path, allow_torn_tail=True) if path.exists() else []
    except JsonlError as exc:
        raise CorruptFile(f"{exc}; {FIX_RECORD}") from None
