"""JSON-serialisable result types of the analysis (pydantic)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from raftlab.analysis.checks import Check


class Interval(BaseModel):
    """A point estimate with a percentile-bootstrap interval (``low``/``high`` None when not computed)."""

    value: float
    low: float | None = None
    high: float | None = None

    def contains(self, x: float) -> bool:
        return self.low is not None and self.high is not None and self.low <= x <= self.high


class TaskDelta(BaseModel):
    """RAFT vs FT on one task: ΔAcc = Acc_RAFT − Acc_FT, ΔECE = −(ECE_RAFT − ECE_FT); positive = RAFT better."""

    task: str
    n_ft: int
    n_raft: int
    paired: bool = Field(description="questions resampled jointly (both arms evaluated on the same ids)")
    acc_ft: float
    acc_raft: float
    ece_ft: float
    ece_raft: float
    delta_acc: Interval
    delta_ece: Interval


class OLSFit(BaseModel):
    """Ordinary least squares ``y = slope * x + intercept`` with Pearson r, its two-sided p-value, and the
    one-tailed p-value of a positive relation (H1: r > 0), as the paper's Table 10 reports."""

    x: str = "delta_acc"
    y: str = "delta_ece"
    slope: float
    intercept: float
    r: float | None = None
    p: float | None = None
    p_one_sided: float | None = Field(None, description="one-tailed p-value, H1: positive correlation (Table 10)")
    r2: float | None = None
    n: int = 0
    slope_stderr: float | None = None
    intercept_stderr: float | None = None
    points: list[dict[str, Any]] = Field(default_factory=list, description="[{label, x, y}] the fit was made on")
    x_range: list[float] | None = Field(None, description="[low, high] of x the fit was made on (published fits: "
                                        "approximate, see analysis.prediction)")
    source: str = "fitted"

    def predict(self, x: float) -> float:
        return self.slope * float(x) + self.intercept


class TaskRow(BaseModel):
    """Everything the analysis knows about one task."""

    task: str
    n: int = 0
    metrics: dict[str, dict[str, int | float | None]] = Field(
        default_factory=dict, description="arm -> metric -> value")
    delta: TaskDelta | None = None
    arm_deltas: dict[str, TaskDelta] = Field(
        default_factory=dict, description="other arms (blank, align, ...) vs FT, same definitions as `delta`")
    contrasts: dict[str, TaskDelta] = Field(
        default_factory=dict, description="the paper's four-arm differences (analysis.four_arms.CONTRASTS): name "
                                          "-> task_deltas(b, a); the 'raft' fields hold arm a, the 'ft' fields arm b")
    token_prob: dict[str, dict[str, int | float | None]] = Field(
        default_factory=dict, description="label-only arm -> metrics with the answer tokens' probability as the "
                                          "confidence (direct_prob; the same questions, one forward pass each)")
    difficulty: dict[str, float] = Field(default_factory=dict, description="difficulty metric -> value")
    cost: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="arm -> {tokens_per_question, seconds_per_question, train_seconds, "
                                          "trained_tokens, trained_target_tokens, machine, backend}")
    reliability: dict[str, list[dict[str, Any]]] = Field(
        default_factory=dict, description="arm -> reliability-diagram bins [{low, high, count, accuracy, confidence}]")
    sources: dict[str, str] = Field(default_factory=dict, description="arm -> eval-record path")
    checks: list[Check] = Field(default_factory=list, description="artifact checks of every arm (analysis.checks)")
    trustworthy: bool = Field(True, description="no failed check on the compared arms")
    reasons: list[str] = Field(default_factory=list, description="why the verdict is 'not trustworthy'")
    baselines: dict[str, float] = Field(default_factory=dict, description="majority_class / chance accuracy")
    invalid_policies: dict[str, dict[str, dict[str, float | int | None]]] = Field(
        default_factory=dict, description="arm -> invalid-answer policy -> {accuracy, ece, n}")


class AnalysisResult(BaseModel):
    """The study analysis: per-task rows, the ΔECE-vs-ΔAcc fit, and difficulty fits."""

    tasks: list[TaskRow] = Field(default_factory=list)
    fit: OLSFit | None = Field(None, description="ΔECE = α·ΔAcc + β over tasks (None with fewer than 3 tasks)")
    difficulty_fits: list[OLSFit] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list, description="why a fit is missing, skipped tasks, ...")

    def task(self, name: str) -> TaskRow:
        for row in self.tasks:
            if row.task == name:
                return row
        raise KeyError(name)

    def save(self, path: str) -> None:
        from pathlib import Path

        Path(path).write_text(self.model_dump_json(indent=2), encoding="utf-8")

    @classmethod
    def load(cls, path: str) -> AnalysisResult:
        from pathlib import Path

        return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))
