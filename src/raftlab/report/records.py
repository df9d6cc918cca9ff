"""Find and read the eval records (per-question JSONL) of a run directory.

Layout written by :mod:`raftlab.study`: ``RUN/eval/<arm>/<task>/records.jsonl`` (any ``*.jsonl`` in that
folder is read; see docs/ARCHITECTURE.md for the record format).
"""

from __future__ import annotations

import random
from pathlib import Path

from raftlab.analysis.records import RecordError, read_records
from raftlab.report.data import OutputSample

__all__ = ["RecordError", "latest_records", "sample_outputs"]


def latest_records(folder_or_file: Path) -> list[dict]:
    """One record per question (the last one read: a resumed eval may repeat an id) of an eval folder (its
    ``*.jsonl`` files, sorted) or of one JSONL file; each must have ``id``, ``correct`` and ``confidence``.

    Read with :func:`raftlab.analysis.records.read_records` (errors name file and line; a torn last line from an
    interrupted eval is skipped)."""
    records: dict[str, dict] = {}
    for rec in read_records(folder_or_file):
        where = rec.pop("_where")
        for key in ("id", "correct", "confidence"):
            if key not in rec:
                raise RecordError(f"{where}: missing field {key!r}")
        records[str(rec["id"])] = rec
    return list(records.values())


def sample_outputs(records_by_arm: dict[str, list[dict]], n: int = 3, seed: int = 0) -> list[OutputSample]:
    """Up to ``n`` questions (the same ids for every arm), with each arm's first sampled text."""
    by_arm = {arm: {str(r["id"]): r for r in recs} for arm, recs in records_by_arm.items()}
    common = sorted(set.intersection(*(set(d) for d in by_arm.values()))) if by_arm else []
    chosen = random.Random(seed).sample(common, min(n, len(common)))
    out = []
    for qid in sorted(chosen):
        for arm, recs in by_arm.items():
            r = recs[qid]
            samples = r.get("samples") or [""]
            out.append(OutputSample(
                arm=arm, id=qid, gold=str(r.get("gold", "")), prediction=str(r.get("prediction", "")),
                confidence=r.get("confidence"), correct=r.get("correct"), text=str(samples[0])))
    return out
