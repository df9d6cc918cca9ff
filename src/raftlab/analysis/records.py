"""Reading per-question eval records (docs/ARCHITECTURE.md, "Eval records") for analysis."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from raftlab.inference.records import read_records as read_eval_records
from raftlab.schema import INVALID

#: Eval modes whose confidence is not a vote share (``k`` is then not used for binning).
NON_VOTE_MODES = frozenset({"direct_prob"})

#: How a question whose samples are (partly) unparseable is scored (docs/study.md, "Is this result trustworthy?"):
#:
#: * ``vote`` (default, as recorded): an invalid output is an answer of its own. A question whose majority is
#:   invalid is wrong, with confidence = the invalid share; a unanimous invalid vote is a confident (1.0) wrong
#:   answer, which is how a too-small generation budget inflates ECE.
#: * ``exclude``: invalid votes are left out of the majority; the prediction is the most-voted valid answer and
#:   its confidence its share of all k samples (invalid votes lower it). No valid vote: wrong, confidence 0.
#: * ``abstain``: a question whose majority is invalid is abstained from: left out of accuracy and calibration
#:   (``n`` drops; coverage = answered / asked).
INVALID_POLICIES = ("vote", "exclude", "abstain")


class RecordError(ValueError):
    """A malformed eval-record file; the message names the file, line and field."""


@dataclass
class EvalRecords:
    """One arm's eval of one task: aligned arrays over questions.

    ``k`` holds each question's number of self-consistency samples, or is None when the
    records carry no ``k`` (confidences then are not treated as vote shares).
    """

    ids: list[str]
    confidence: np.ndarray
    correct: np.ndarray
    k: np.ndarray | None = None
    task: str | None = None
    source: str = ""

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, ids: list[str]) -> EvalRecords:
        """The records of ``ids``, in that order."""
        pos = {qid: i for i, qid in enumerate(self.ids)}
        idx = np.array([pos[q] for q in ids], dtype=int)
        return EvalRecords(list(ids), self.confidence[idx], self.correct[idx],
                           None if self.k is None else self.k[idx], self.task, self.source)

    @classmethod
    def from_dicts(cls, records: list[dict[str, Any]], source: str = "<records>",
                   invalid: str = "vote") -> EvalRecords:
        """Validate and convert record dicts (later duplicates of an id replace earlier ones); ``invalid`` is the
        policy for unparseable samples (:data:`INVALID_POLICIES`)."""
        if invalid not in INVALID_POLICIES:
            raise ValueError(f"invalid-answer policy must be one of {', '.join(INVALID_POLICIES)}, not {invalid!r}")
        by_id: dict[str, tuple[float, bool, int | None]] = {}
        tasks: set[str] = set()
        for i, rec in enumerate(records, 1):
            if not isinstance(rec, dict):
                raise RecordError(f"{source}:{i}: expected a JSON object, got {type(rec).__name__}")
            where = str(rec.get("_where", f"{source}:{i}"))
            qid = _field_id(rec, where)
            scored = rescore(rec, invalid, where)
            if scored is None:  # abstained
                by_id.pop(qid, None)
                continue
            by_id[qid] = _parse_row(scored, where)
            if rec.get("task") is not None:
                tasks.add(str(rec["task"]))
        if not by_id:
            raise RecordError(f"{source}: no eval records" + ("" if invalid == "vote" else
                                                             f" left under the {invalid!r} policy"))
        ids = list(by_id)
        conf = np.array([by_id[q][0] for q in ids], dtype=float)
        correct = np.array([by_id[q][1] for q in ids], dtype=bool)
        ks = [by_id[q][2] for q in ids]
        k = None if any(v is None for v in ks) else np.array(ks, dtype=np.int64)
        task = tasks.pop() if len(tasks) == 1 else None
        return cls(ids, conf, correct, k, task, source)


def answers_match(prediction: str, gold: str) -> bool:
    """A canonical answer equals the gold label: numbers within 1e-4, option letters exactly."""
    from raftlab.tasks.answers import numbers_equal

    try:
        float(prediction), float(gold)
    except (TypeError, ValueError):
        return str(prediction).strip().upper() == str(gold).strip().upper()
    return numbers_equal(prediction, gold)


def rescore(rec: dict[str, Any], invalid: str, where: str = "<record>") -> dict[str, Any] | None:
    """The record scored under an invalid-answer policy (None: abstained). ``vote`` returns it unchanged."""
    if invalid == "vote" or rec.get("mode") in NON_VOTE_MODES:
        return rec
    for key in ("votes", "prediction", "gold", "k"):
        if key not in rec:
            raise RecordError(f"{where}: field {key!r} is needed for the {invalid!r} invalid-answer policy")
    if invalid == "abstain":
        return None if rec["prediction"] == INVALID else rec
    valid = {a: c for a, c in rec["votes"].items() if a != INVALID}
    if not valid:
        return {**rec, "prediction": INVALID, "confidence": 0.0, "correct": False}
    top = max(valid.values())
    if valid.get(rec["prediction"]) == top:  # a valid majority: as recorded
        return rec
    pred = next(a for a, c in valid.items() if c == top)
    return {**rec, "prediction": pred, "confidence": top / rec["k"], "correct": answers_match(pred, rec["gold"])}


def _field_id(rec: dict[str, Any], where: str) -> str:
    if "id" not in rec or rec["id"] is None:
        raise RecordError(f"{where}: missing field 'id'")
    return str(rec["id"])


def _parse_row(rec: dict[str, Any], where: str) -> tuple[float, bool, int | None]:
    for key in ("confidence", "correct"):
        if key not in rec:
            raise RecordError(f"{where}: missing field {key!r}")
    conf = rec["confidence"]
    if isinstance(conf, bool) or not isinstance(conf, (int, float)) or not math.isfinite(conf) or not 0 <= conf <= 1:
        raise RecordError(f"{where}: field 'confidence' must be a number in [0, 1], got {conf!r}")
    correct = rec["correct"]
    if correct not in (True, False, 0, 1):
        raise RecordError(f"{where}: field 'correct' must be true/false, got {correct!r}")
    k = None if rec.get("mode") in NON_VOTE_MODES else rec.get("k")
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise RecordError(f"{where}: field 'k' must be a positive integer, got {k!r}")
        if abs(conf * k - round(conf * k)) > 1e-6:
            raise RecordError(f"{where}: field 'confidence' = {conf!r} is not a vote share v/k for k={k}")
    return float(conf), bool(correct), k


def load_records(path: str | Path, invalid: str = "vote") -> EvalRecords:
    """Eval records of one JSONL file, or of every ``*.jsonl`` file in a folder (sorted by name), scored under an
    invalid-answer policy (:data:`INVALID_POLICIES`). A question id seen again (a resumed eval) keeps its last
    record."""
    return EvalRecords.from_dicts(read_records(path), source=str(path), invalid=invalid)


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The raw record dicts of a JSONL file or of every ``*.jsonl`` file in a folder (sorted by name), each tagged
    with ``_where`` ("file:line"); problems are :class:`RecordError` (see
    :func:`raftlab.inference.records.read_records`)."""
    return read_eval_records(path, error=RecordError, where=True, required=True)
