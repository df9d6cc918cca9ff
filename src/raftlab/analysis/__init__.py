"""Study analysis: RAFT-vs-FT deltas with bootstrap CIs, OLS fits, difficulty metrics, gain prediction,
and information-gain curves.

>>> from raftlab.analysis import analyze_study
>>> result = analyze_study({"gsm8k": {"ft": "ft/records.jsonl", "raft": "raft/records.jsonl"}, ...})
>>> result.fit.slope, result.fit.r, result.fit.p
"""

from raftlab.analysis.deltas import as_records, task_deltas
from raftlab.analysis.difficulty import (
    DIFFICULTY_METRICS,
    difficulty_fits,
    mean_of_task_demonstrations,
    mean_of_task_prompt,
    mean_of_task_prompts,
    generated_rationale_length,
    mean_rationale_length,
    rationale_length_by_task,
    teacher_demonstrations,
)
from raftlab.analysis.directions import hypothesised_direction
from raftlab.analysis.headline import headline
from raftlab.analysis.four_arms import ARM_DESCRIPTIONS, CONTRASTS, PAPER_ARMS, contrast_intervals, four_arm_rows
from raftlab.analysis.info_gain import (
    InfoGainCurve,
    answer_logprobs_by_prefix,
    answer_probability_curve,
    average_curves,
    example_information_gain,
    information_gain,
    information_gain_curve,
    rationale_prefixes,
    split_sentences,
)
from raftlab.analysis.models import AnalysisResult, Interval, OLSFit, SizePoint, TaskDelta, TaskRow
from raftlab.analysis.ols import fit_ols, load_fit, save_fit
from raftlab.analysis.prediction import PUBLISHED_FITS, GainPrediction, predict_gain
from raftlab.analysis.records import EvalRecords, RecordError, load_records
from raftlab.analysis.study import analyze_study, discover_runs
from raftlab.analysis.sizes import SizedArms, discover_sizes, learning_curve

__all__ = [
    "headline", "ARM_DESCRIPTIONS", "CONTRASTS", "PAPER_ARMS", "contrast_intervals", "four_arm_rows",
    "DIFFICULTY_METRICS", "PUBLISHED_FITS", "AnalysisResult", "as_records", "EvalRecords", "GainPrediction",
    "InfoGainCurve",
    "Interval", "OLSFit", "RecordError", "TaskDelta", "TaskRow", "analyze_study", "answer_logprobs_by_prefix",
    "answer_probability_curve", "average_curves", "difficulty_fits", "discover_runs", "example_information_gain",
    "fit_ols", "information_gain", "information_gain_curve", "load_fit", "load_records",
    "mean_of_task_demonstrations", "mean_of_task_prompt", "mean_of_task_prompts", "mean_rationale_length",
    "generated_rationale_length", "predict_gain", "rationale_length_by_task", "rationale_prefixes", "save_fit",
    "split_sentences", "task_deltas", "teacher_demonstrations", "hypothesised_direction", "SizePoint", "SizedArms",
    "discover_sizes", "learning_curve",
]
