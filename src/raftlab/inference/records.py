"""Reading back the per-question eval records (``records.jsonl``; written with :class:`raftlab.storage.JsonlAppender`):
the one reader of eval records, for resuming an eval, the analysis and the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raftlab.corrupt import CorruptFile
from raftlab.storage import iter_jsonl

#: What to do about a damaged line of eval records: a resumed eval recomputes the questions it lacks.
FIX_RECORD = "delete that line and evaluate again with the same --out to recompute it"


def read_records(path: str | Path, *, error: type[ValueError] = CorruptFile, where: bool = False,
                 required: bool = False) -> list[dict[str, Any]]:
    """The records of an eval's JSONL file, or of every ``*.jsonl`` file in a folder (sorted by name), in order.

    A torn last line (a crash mid-write; a resumed eval recomputes it) is dropped; any other bad line raises
    ``error`` naming file, line and :data:`FIX_RECORD`. With ``where`` each record carries ``"_where":
    "file:line"`` for later messages. A path that does not exist holds no records, unless ``required``: then it
    raises :class:`FileNotFoundError`, and a folder without ``*.jsonl`` files raises ``error``."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
        if not files and required:
            raise error(f"{path}: folder holds no *.jsonl eval records")
    elif path.exists():
        files = [path]
    elif required:
        raise FileNotFoundError(f"{path}: no such eval-record file or folder")
    else:
        files = []
    rows = []
    for file in files:
        try:
            for lineno, rec in iter_jsonl(file, allow_torn_tail=True, error=error, objects=True):
                if where:
                    rec["_where"] = f"{file}:{lineno}"
                rows.append(rec)
        except error as exc:
            raise error(f"{exc}; {FIX_RECORD}") from None
    return rows
