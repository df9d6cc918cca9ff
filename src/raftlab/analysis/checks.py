"""Artifact checks: is a measured accuracy what the model does, or an artifact of how it was measured?

Each check reads an arm's eval records (and, where the run has them, the eval's ``settings.json``, the
``budget.json`` a study writes, and the model's ``train_summary.json``). A check past its threshold marks the
task's verdict *not trustworthy* with its reason; such tasks are left out of the main across-task fits unless
asked, and the fits over all tasks (the paper's way) are reported beside them (docs/study.md, "Is this result
trustworthy?").

=================  ===========  =======================================================================
check              threshold    fails when
=================  ===========  =======================================================================
truncated          5% samples   samples hit ``max_new_tokens`` without a parseable answer
invalid            25% samples  samples have no parseable answer at all
outside_labels     1% answers   parsed answers are not among the question's options
constant           (any)        every sample of every question gives the same answer (>= 5 questions)
prompt_mismatch    (any)        the eval prompt is not the prompt the model was trained on
train_test_overlap 2% questions test questions also appear in the model's training data
no_arm_learned     (any)        no finetuned arm's accuracy is above majority class / chance beyond its CI
=================  ===========  =======================================================================

Majority-class and chance accuracies are reported next to each accuracy. One weak arm is not an artifact; a task
on which no finetuned arm learned anything compares two untrained models, so its ΔAcc says nothing about
rationales (``no_arm_learned``, a check of the task, not of one arm).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from raftlab import layout
from raftlab.corrupt import read_json
from raftlab.metrics import ConfidenceInterval, accuracy, bootstrap_ci
from raftlab.models.loading import model_fix
from raftlab.schema import INVALID

THRESHOLDS: dict[str, float] = {"truncated": 0.05, "invalid": 0.25, "outside_labels": 0.01, "constant": 0.0,
                                "prompt_mismatch": 0.0, "train_test_overlap": 0.02, "no_arm_learned": 0.0}
MIN_QUESTIONS_FOR_CONSTANT = 5
#: The ``arm`` of a check of the whole task (every finetuned arm together); it counts in every verdict.
FINETUNED = "finetuned arms"


class Check(BaseModel):
    """One artifact check of one arm."""

    name: str
    arm: str
    value: float | None = None
    threshold: float
    failed: bool
    message: str


class ArmContext(BaseModel):
    """What the checks know about how an arm was evaluated (read from its eval folder; all optional)."""

    max_new_tokens: int | None = None
    budget_need: int | None = None
    prompt_mode: str | None = None
    trained_prompt_modes: list[str] | None = None
    objective: str | None = None
    train_questions: list[str] | None = None
    #: cost of the arm: from the model's train_summary.json and the eval's metrics.json / settings.json
    train_seconds: float | None = None
    trained_tokens: int | None = None
    trained_target_tokens: int | None = None
    machine: dict[str, Any] | None = None
    backend: str | None = None
    #: how training ended: train_summary.json's ``stopping`` (raftlab.training.early_stopping.stopping)
    stop_reason: str | None = None
    steps: int | None = None
    max_steps: int | None = None
    best_step: int | None = None
    still_improving: bool | None = None
    train_examples: int | None = None

    def cost(self) -> dict[str, Any]:
        return {"train_seconds": self.train_seconds, "trained_tokens": self.trained_tokens,
                "trained_target_tokens": self.trained_target_tokens, "machine": self.machine,
                "backend": self.backend}

    def training(self) -> dict[str, Any]:
        """How the arm's training ended (empty for an arm that was not trained by raftlab)."""
        facts = {"stop_reason": self.stop_reason, "steps": self.steps, "max_steps": self.max_steps,
                 "best_step": self.best_step, "still_improving": self.still_improving,
                 "train_examples": self.train_examples}
        return facts if any(v is not None for v in facts.values()) else {}

    @classmethod
    def of_folder(cls, folder: str | Path) -> ArmContext:
        """From ``settings.json`` (budget, prompt, model), ``budget.json`` and the model's ``train_summary.json``."""
        folder = Path(folder)
        ctx = cls()
        settings = _json(folder / "settings.json", "delete the eval folder and evaluate again")
        if settings:
            ctx.max_new_tokens = (settings.get("sampling") or {}).get("max_new_tokens")
            ctx.prompt_mode = settings.get("prompt_mode")
            described = settings.get("model") or {}
            model = described.get("model")
            ctx.backend = f"{described.get('backend', '?')}:{model}" if model else described.get("backend")
            trained = Path(str(model)) / "train_summary.json" if model else None
            summary = _json(trained, model_fix(trained.parent)) if trained and trained.is_file() else None
            if summary:
                _add_training(ctx, summary)
        metrics = _json(folder / "metrics.json", REWRITE)
        if metrics and isinstance(metrics.get("machine"), dict):
            ctx.machine = metrics["machine"]
        budget = _json(folder / "budget.json", REWRITE)
        if budget:
            ctx.budget_need = budget.get("need")
        return ctx


#: What to do about a damaged file that every eval writes anew.
REWRITE = "evaluate again with the same --out to rewrite it"


def _json(path: Path, fix: str) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when there is none (a damaged file is a CorruptFile naming ``fix``)."""
    if not path.is_file():
        return None
    data = read_json(path, fix)
    return data if isinstance(data, dict) else None


def _add_training(ctx: ArmContext, summary: dict[str, Any]) -> None:
    """What a model's ``train_summary.json`` says: its objective, cost, how training ended, and the questions it
    was trained on (for the overlap check)."""
    from raftlab.storage import read_jsonl
    from raftlab.training.features import PROMPT_MODES

    config = summary.get("config") or {}
    ctx.train_seconds = summary.get("train_seconds")
    ctx.trained_tokens = summary.get("trained_tokens")
    ctx.trained_target_tokens = summary.get("trained_target_tokens")
    stopping = summary.get("stopping") or {}
    ctx.stop_reason, ctx.steps = stopping.get("reason"), stopping.get("steps", summary.get("global_step"))
    ctx.max_steps, ctx.best_step = stopping.get("max_steps"), stopping.get("best_step")
    ctx.still_improving, ctx.train_examples = stopping.get("still_improving"), stopping.get("train_examples")
    ctx.objective = config.get("objective")
    ctx.trained_prompt_modes = list(PROMPT_MODES.get(ctx.objective or "", ())) or None
    data = config.get("data")
    questions: list[str] = []
    for item in [data] if isinstance(data, str) else data or []:
        path = Path(str(item))
        path = path / "rationales.jsonl" if path.is_dir() else path
        try:
            questions += [str(r.get("question", "")) for r in read_jsonl(path)]
        except (OSError, ValueError):
            return  # training data moved or unreadable: the overlap check is skipped
    ctx.train_questions = questions or None


def baselines(records: list[dict[str, Any]]) -> dict[str, float]:
    """Accuracy of always answering the most frequent gold label, and of guessing uniformly among the options
    (choice tasks only)."""
    golds = [str(r.get("gold")) for r in records if "gold" in r]
    out: dict[str, float] = {}
    if golds:
        out["majority_class"] = Counter(golds).most_common(1)[0][1] / len(golds)
    options = [len(r["labels"]) for r in records if r.get("labels")]
    if options and len(options) == len(records):
        out["chance"] = sum(1 / n for n in options) / len(options)
    return out


def _samples(records: list[dict[str, Any]]) -> list[tuple[str, str | None, int | None]]:
    """(answer, finish reason, tokens) of every sample that has a parsed answer."""
    out = []
    for r in records:
        answers = r.get("answers") or []
        finish = r.get("finish") or [None] * len(answers)
        tokens = r.get("num_tokens") or [None] * len(answers)
        out += list(zip(answers, finish, tokens))
    return out


def _check(name: str, arm: str, value: float | None, message: str, failed: bool | None = None) -> Check:
    threshold = THRESHOLDS[name]
    return Check(name=name, arm=arm, value=value, threshold=threshold, message=message,
                 failed=bool(value is not None and value > threshold) if failed is None else failed)


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def arm_checks(arm: str, records: list[dict[str, Any]], ctx: ArmContext | None = None) -> list[Check]:
    """Every check that the records and context allow, failed or not."""
    ctx = ctx or ArmContext()
    checks: list[Check] = []
    samples = _samples(records)
    if samples:
        budget = ctx.max_new_tokens

        def cut(finish: str | None, tokens: int | None) -> bool:
            if finish is not None:
                return finish == "length"
            return budget is not None and tokens is not None and tokens >= budget

        truncated = sum(a == INVALID and cut(f, t) for a, f, t in samples) / len(samples)
        advice = ""
        if budget and ctx.budget_need and budget >= ctx.budget_need:
            advice = ("; the budget already covers the training targets (99th percentile + margin), so the model "
                      "does not end its answers the way its targets do")
        elif budget:
            advice = f"; rerun with max_new_tokens >= {ctx.budget_need or 2 * budget}"
        checks.append(_check("truncated", arm, truncated, f"{arm}: {_pct(truncated)} of samples were cut off at "
                             f"{budget or 'the budget'} tokens before an answer{advice}"))
        invalid = sum(a == INVALID for a, _, _ in samples) / len(samples)
        checks.append(_check("invalid", arm, invalid, f"{arm}: {_pct(invalid)} of samples have no parseable answer"))
        answers = [(a, r.get("labels")) for r in records for a in r.get("answers") or [] if a != INVALID]
        with_labels = [(a, labels) for a, labels in answers if labels]
        if with_labels:
            outside = sum(a not in labels for a, labels in with_labels) / len(with_labels)
            checks.append(_check("outside_labels", arm, outside,
                                 f"{arm}: {_pct(outside)} of parsed answers are not among the question's options"))
        distinct = {a for a, _, _ in samples}
        if len(records) >= MIN_QUESTIONS_FOR_CONSTANT:
            only = next(iter(distinct)) if len(distinct) == 1 else None
            checks.append(_check("constant", arm, float(len(distinct) == 1),
                                 f"{arm}: every sample of all {len(records)} questions answers {only!r}"
                                 if only is not None else f"{arm}: {len(distinct)} distinct answers",
                                 failed=len(distinct) == 1))
    if ctx.prompt_mode and ctx.trained_prompt_modes:
        mismatch = ctx.prompt_mode not in ctx.trained_prompt_modes
        checks.append(_check("prompt_mismatch", arm, float(mismatch),
                             f"{arm}: evaluated with the {ctx.prompt_mode!r} prompt but trained ({ctx.objective}) on "
                             f"{' / '.join(ctx.trained_prompt_modes)}", failed=mismatch))
    questions = [str(r["question"]) for r in records if r.get("question")]
    if ctx.train_questions is not None and questions:
        seen = {q.strip() for q in ctx.train_questions}
        overlap = sum(q.strip() in seen for q in questions) / len(questions)
        checks.append(_check("train_test_overlap", arm, overlap,
                             f"{arm}: {_pct(overlap)} of test questions are also in the training data"))
    return checks


def is_finetuned(arm: str) -> bool:
    """Every arm but the untrained, in-context ones (①, ②)."""
    return arm not in layout.PROMPT_ARMS


def chance_bar(base: dict[str, float]) -> tuple[str, float] | None:
    """``(name, accuracy)`` a finetuned arm must beat: the higher of majority class and chance (None when the
    records give neither)."""
    named = {"majority class": base.get("majority_class"), "chance": base.get("chance")}
    known = [(name, v) for name, v in named.items() if v is not None]
    return max(known, key=lambda kv: kv[1]) if known else None


def accuracy_interval(correct: Any, n_boot: int, seed: int, alpha: float) -> ConfidenceInterval:
    """Accuracy with its percentile-bootstrap interval (the point estimate alone when ``n_boot`` is 0)."""
    import numpy as np

    values = np.asarray(correct, dtype=float)
    if n_boot <= 0:
        mean = float(values.mean())
        return ConfidenceInterval(mean, mean, mean, alpha, 0)
    return bootstrap_ci(accuracy, values, n_boot=n_boot, alpha=alpha, seed=seed)


def learned(ci: ConfidenceInterval, bar: tuple[str, float]) -> bool:
    """The accuracy is above the bar beyond its interval (its lower bound is above it)."""
    return ci.low > bar[1]


def _acc_text(arm: str, ci: ConfidenceInterval) -> str:
    interval = f" [{ci.low:.2f}, {ci.high:.2f}]" if ci.n_boot else ""
    return f"{arm.upper()} {ci.value:.2f}{interval}"


def learning_check(intervals: dict[str, ConfidenceInterval], bar: tuple[str, float]) -> Check:
    """``no_arm_learned``: fails when none of the finetuned arms' accuracies is above ``bar`` beyond its CI."""
    failed = not any(learned(ci, bar) for ci in intervals.values())
    accs = ", ".join(_acc_text(arm, ci) for arm, ci in intervals.items())
    level = f"{100 * (1 - next(iter(intervals.values())).alpha):.0f}%"
    message = (f"no finetuned arm learned: accuracy {accs} is not above {bar[0]} ({bar[1]:.2f}) beyond its {level} CI"
               if failed else f"a finetuned arm learned: accuracy {accs} vs {bar[0]} {bar[1]:.2f}")
    return _check("no_arm_learned", FINETUNED, float(failed), message, failed=failed)


def verdict(checks: list[Check], arms: tuple[str, ...] | list[str]) -> tuple[bool, list[str]]:
    """``(trustworthy, reasons)`` of a task from the checks of the compared ``arms`` and of the whole task."""
    reasons = [c.message for c in checks if c.failed and (c.arm in arms or c.arm == FINETUNED)]
    return not reasons, reasons
