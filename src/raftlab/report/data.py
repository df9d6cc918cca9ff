"""The plain data a report is drawn from (independent of how it was computed)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from raftlab.analysis.models import Interval, OLSFit, SizePoint


class ReliabilityBin(BaseModel):
    """One bin of a reliability diagram."""

    low: float
    high: float
    count: int
    accuracy: float | None = None
    confidence: float | None = None


class OutputSample(BaseModel):
    """One model answer shown in the report (all text is escaped when rendered)."""

    arm: str
    id: str
    gold: str
    prediction: str
    confidence: float | None = None
    correct: bool | None = None
    text: str = ""


class RationaleExample(BaseModel):
    """A kept teacher rationale shown verbatim (escaped when rendered), with the judge's verdict if it judged it."""

    id: str
    question: str
    label: str
    rationale: str
    verdict: str | None = None


class RationaleSummary(BaseModel):
    """One task's teacher rationales: what the gold filter kept and why it rejected the other attempts, the kept
    ones' lengths, the judge's verdicts on a sample, and a few kept ones verbatim."""

    task: str
    kept: int
    trained: int | None = Field(None, description="kept rationales exported for training (fewer than ``kept`` when "
                                "the teacher's last call kept more than ``kept_target``)")
    attempted: int | None = Field(None, description="examples the teacher was asked about (None: no stats.json)")
    attempts: int | None = Field(None, description="teacher outputs judged by the gold filter")
    pending: int | None = None
    rejections: dict[str, int] = Field(default_factory=dict, description="gold-filter reason -> rejected attempts")
    errors: dict[str, int] = Field(default_factory=dict, description="other failed attempts (e.g. empty output)")
    length_unit: str = "words"
    lengths: dict[str, float] = Field(default_factory=dict, description="min, p25, median, p75, max, mean")
    length_bins: list[tuple[float, float, int]] = Field(default_factory=list, description="(low, high, count)")
    judge: dict[str, Any] | None = Field(None, description="the judge stage's counts (judge.json without verdicts)")
    examples: list[RationaleExample] = Field(default_factory=list)

    @property
    def kept_rate(self) -> float | None:
        """Kept rationales per example attempted."""
        return self.kept / self.attempted if self.attempted else None

    @property
    def pass_rate(self) -> float | None:
        """Share of the teacher's attempts that passed the gold filter (one per kept rationale)."""
        return self.kept / self.attempts if self.attempts else None


class TaskSummary(BaseModel):
    """Per-task numbers: metrics per arm, the RAFT-vs-FT deltas, and difficulty metrics."""

    task: str
    n: int = 0
    metrics: dict[str, dict[str, float]] = Field(default_factory=dict, description="arm -> metric -> value")
    delta_acc: Interval | None = None
    delta_ece: Interval | None = None
    difficulty: dict[str, float] = Field(default_factory=dict, description="metric name -> value")
    arm_deltas: dict[str, dict[str, Interval]] = Field(
        default_factory=dict, description="further arm (blank, align) -> {'delta_acc', 'delta_ece'} vs the baseline")
    cost: dict[str, dict[str, Any]] = Field(default_factory=dict, description="arm -> cost (analysis TaskRow.cost)")
    trustworthy: bool = True
    role: str = Field("fit", description="'validation': left out of the fits, drawn as a check of them")
    reasons: list[str] = Field(default_factory=list, description="failed artifact checks of the compared arms")
    baselines: dict[str, float] = Field(default_factory=dict, description="majority_class / chance accuracy")
    invalid_policies: dict[str, dict[str, dict[str, float | int | None]]] = Field(
        default_factory=dict, description="arm -> invalid-answer policy -> {accuracy, ece, n}")
    training: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="trained arm -> how its training ended (analysis TaskRow.training)")
    learned: dict[str, bool] = Field(default_factory=dict, description="finetuned arm -> above majority/chance")
    caveats: list[str] = Field(default_factory=list, description="what limits the task's ΔAcc, in words")


class ReportData(BaseModel):
    """Everything :func:`raftlab.report.render_report` draws."""

    title: str = "raftlab study report"
    arms: list[str] = Field(default_factory=list)
    tasks: list[TaskSummary] = Field(default_factory=list)
    fit: OLSFit | None = None
    difficulty_fits: list[OLSFit] = Field(default_factory=list)
    other_fit: OLSFit | None = Field(None, description="`fit` over the other task set (all tasks vs trustworthy "
                                                       "only); when a task is flagged")
    other_difficulty_fits: list[OLSFit] = Field(default_factory=list)
    reliability: dict[str, dict[str, list[ReliabilityBin]]] = Field(
        default_factory=dict, description="task -> arm -> bins")
    info_gain: dict[str, dict[str, list[float]]] = Field(
        default_factory=dict, description="task -> label -> P(final answer) after each rationale prefix")
    info_gain_steps: dict[str, str] = Field(default_factory=dict, description="task -> prefix unit (tokens|sentences)")
    learning_curves: dict[str, list[SizePoint]] = Field(
        default_factory=dict, description="task -> RAFT vs FT per training-set size (analysis TaskRow.sizes)")
    samples: dict[str, list[OutputSample]] = Field(default_factory=dict, description="task -> sample outputs")
    rationales: dict[str, RationaleSummary] = Field(default_factory=dict, description="task -> teacher rationales")
    meta: dict[str, Any] = Field(default_factory=dict, description="config, model names, settings")
    headline: list[str] = Field(default_factory=list, description="the answer in words (analysis.headline)")
    four_arms: list[dict[str, Any]] = Field(
        default_factory=list, description="the paper's Fig. 4 table: rows of raftlab.analysis.four_arm_rows")
    notes: list[str] = Field(default_factory=list, description="caveats from the analysis (missing fits, ...)")

    def task(self, name: str) -> TaskSummary:
        for t in self.tasks:
            if t.task == name:
                return t
        raise KeyError(name)
