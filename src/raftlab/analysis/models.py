"""JSON-serialisable result types of the analysis (pydantic)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from raftlab.analysis.checks import Check
from raftlab.analysis.directions import Direction, h1

#: What to do about a damaged saved analysis: it is derived from the eval records, which remain.
FIX_ANALYSIS = ("write it again with `raftlab analyze RUN --out <this file>` (or delete it: the report then analyses "
                "the eval records itself)")


class Interval(BaseModel):
    """A point estimate with a percentile-bootstrap interval (``low``/``high`` None when not computed)."""

    value: float
    low: float | None = None
    high: float | None = None

    def contains(self, x: float) -> bool:
        return self.low is not None and self.high is not None and self.low <= x <= self.high

    def text(self, digits: int = 4, scale: float = 1.0) -> str:
        """``+v [+low, +high]`` (``+v`` alone without bounds), each times ``scale`` (100: percent) with ``digits``
        decimals."""
        def f(x: float) -> str:
            return f"{scale * x:+.{digits}f}"

        if self.low is None or self.high is None:
            return f(self.value)
        return f"{f(self.value)} [{f(self.low)}, {f(self.high)}]"


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


class SizePoint(BaseModel):
    """One point of a task's learning curve: RAFT vs FT, both trained on the same ``n_train`` examples (a study's
    ``train_sizes``), evaluated as the full-size arms."""

    size: int = Field(description="the train_sizes entry; for the full-size arms, the examples they trained on")
    n_train: int | None = Field(None, description="examples trained on (below `size` when the teacher kept fewer "
                                                  "rationales; None: not recorded)")
    full: bool = Field(False, description="the study's full-size FT and RAFT arms (the curve's last point)")
    delta: TaskDelta


class OLSFit(BaseModel):
    """Ordinary least squares ``y = slope * x + intercept`` with Pearson r, its two-sided p-value, and the
    one-tailed p-value in the hypothesised ``direction`` (analysis.directions), as the paper's Tables 5, 9 and
    10 report."""

    x: str = "delta_acc"
    y: str = "delta_ece"
    slope: float
    intercept: float
    r: float | None = None
    p: float | None = None
    p_one_sided: float | None = Field(None, description="one-tailed p-value in `direction` (Tables 5, 9, 10)")
    direction: Direction = Field("positive", description="hypothesised sign of r: 'positive' tests H1: r > 0, "
                                 "'negative' H1: r < 0 (accuracy-type difficulty metrics)")
    r2: float | None = None
    n: int = 0
    slope_stderr: float | None = None
    intercept_stderr: float | None = None
    points: list[dict[str, Any]] = Field(default_factory=list, description="[{label, x, y}] the fit was made on")
    x_range: list[float] | None = Field(None, description="[low, high] of x the fit was made on (published fits: "
                                        "approximate, see analysis.prediction)")
    source: str = "fitted"
    task_set: Literal["all", "trustworthy"] | None = Field(
        None, description="'all' compared tasks (as the paper), or 'trustworthy' ones only (tasks that fail an "
                          "artifact check left out, named in left_out); None: not a study fit")
    left_out: list[str] = Field(default_factory=list, description="flagged tasks this fit leaves out")

    def predict(self, x: float) -> float:
        return self.slope * float(x) + self.intercept

    def h1(self) -> str:
        """The alternative hypothesis of ``p_one_sided`` ("H1: r > 0" or "H1: r < 0")."""
        return h1(self.direction)

    def tasks_text(self) -> str:
        """Which tasks the fit is over, in words."""
        if self.task_set == "trustworthy":
            return f"{self.n} trustworthy tasks (left out: {', '.join(self.left_out) or 'none'})"
        return f"all {self.n} tasks" if self.task_set == "all" else f"{self.n} tasks"

    def stats_text(self, digits: int = 3) -> str:
        """``r = …, p = … two-sided, … one-tailed (H1: r > 0)``; empty without r."""
        if self.r is None:
            return ""
        text = f"r = {self.r:.{digits}f}"
        if self.p is not None:
            text += f", p = {self.p:.{digits}g} two-sided"
        if self.p_one_sided is not None:
            text += f", {self.p_one_sided:.{digits}g} one-tailed ({self.h1()})"
        return text


class ValidationPoint(BaseModel):
    """A validation task (study ``role: validation``) checked against the across-task fit it was left out of: its
    observed ΔECE beside the one the fit predicts from its ΔAcc (the paper's Fig. 5 green crosses)."""

    task: str
    delta_acc: float
    delta_ece: float
    predicted_delta_ece: float
    interval: Interval | None = Field(None, description="95% prediction interval of ΔECE at this ΔAcc")
    inside: bool | None = Field(None, description="observed ΔECE inside the prediction interval")


class TaskRow(BaseModel):
    """Everything the analysis knows about one task."""

    task: str
    role: Literal["fit", "validation"] = Field("fit", description="'validation': left out of every across-task "
                                               "fit and checked against it (AnalysisResult.validation)")
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
    training: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="trained arm -> {stop_reason, steps, max_steps, best_step, "
                                          "still_improving, train_examples} (analysis.checks.ArmContext.training)")
    learned: dict[str, bool] = Field(
        default_factory=dict, description="finetuned arm -> its accuracy is above majority class / chance beyond "
                                          "its CI")
    caveats: list[str] = Field(default_factory=list, description="what limits this task's ΔAcc, in words "
                                                                 "(analysis.caveats)")
    sizes: list[SizePoint] = Field(default_factory=list, description="learning curve (train_sizes): RAFT vs FT "
                                   "per training-set size, ascending, the full-size arms last")


class AnalysisResult(BaseModel):
    """The study analysis: per-task rows, the ΔECE-vs-ΔAcc fit, and difficulty fits.

    ``fit`` and ``difficulty_fits`` leave out tasks that fail an artifact check (unless ``include_flagged``);
    when a task is flagged, ``other_fit`` and ``other_difficulty_fits`` are the same fits over the other task
    set, so both ways (all tasks, as the paper fits them, and trustworthy tasks only) are reported.
    """

    tasks: list[TaskRow] = Field(default_factory=list)
    validation: list[ValidationPoint] = Field(default_factory=list, description="validation tasks (left out of "
                                              "every fit) against the main fit's prediction")
    fit: OLSFit | None = Field(None, description="ΔECE = α·ΔAcc + β over tasks (None with fewer than 3 tasks)")
    difficulty_fits: list[OLSFit] = Field(default_factory=list)
    other_fit: OLSFit | None = Field(None, description="`fit` over the other task set (all vs trustworthy); "
                                                       "only when a task is flagged")
    other_difficulty_fits: list[OLSFit] = Field(default_factory=list, description="`difficulty_fits` over the "
                                                "other task set; only when a task is flagged")
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
        """A saved result; a damaged file is a :class:`~raftlab.corrupt.CorruptFile` naming it."""
        from raftlab.corrupt import read_json

        return cls.model_validate(read_json(path, FIX_ANALYSIS))
