"""Inference: direct / CoT / self-consistency evaluation with resumable per-question records."""

from raftlab.inference.evaluate import DEFAULT_STOP, QUESTIONS_PER_CALL, EvalInterrupted, evaluate
from raftlab.inference.records import read_records
from raftlab.inference.voting import majority_vote
from raftlab.storage import SettingsMismatch

__all__ = ["DEFAULT_STOP", "QUESTIONS_PER_CALL", "EvalInterrupted", "SettingsMismatch", "evaluate", "majority_vote",
           "read_records"]
