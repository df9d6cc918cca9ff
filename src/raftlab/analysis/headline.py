"""The answer of a study in words: one line per task (RAFT vs FT: accuracy, ECE, cost), then the across-task fit.

Example: ``synth_arith: RAFT vs FT ΔAcc +0.41 [+0.30, +0.52], ΔECE +0.12 [+0.05, +0.18], at 11.0× the tokens per
question → more accurate, better calibrated``. ΔAcc and ΔECE are the paper's, as in every table of the report:
ΔAcc = Acc_RAFT − Acc_FT, ΔECE = −(ECE_RAFT − ECE_FT) (positive: RAFT is better calibrated), each with its paired
bootstrap 95% CI. Words are only used where the CI excludes zero. The task's caveats (analysis.caveats) follow in
parentheses, e.g. ``(caveat: RAFT was still improving when it stopped at its maximum of 48 steps)``.
"""

from __future__ import annotations

from typing import Any

from raftlab.analysis.four_arms import contrast_intervals
from raftlab.analysis.models import AnalysisResult, Interval


def _signed(v: float) -> str:
    return f"{v:+.2f}".replace("-", "−")


def _with_ci(iv: Interval) -> str:
    if iv.low is None or iv.high is None:
        return _signed(iv.value)
    return f"{_signed(iv.value)} [{_signed(iv.low)}, {_signed(iv.high)}]"


def _direction(iv: Interval, up: str, down: str) -> str | None:
    if iv.low is not None and iv.low > 0:
        return up
    if iv.high is not None and iv.high < 0:
        return down
    return None


def _negated(iv: Interval) -> Interval:
    return Interval(value=-iv.value, low=None if iv.high is None else -iv.high,
                    high=None if iv.low is None else -iv.low)


def _ratio(cost: dict[str, dict[str, Any]], a: str, b: str, key: str) -> float | None:
    x, y = (cost.get(a) or {}).get(key), (cost.get(b) or {}).get(key)
    return x / y if isinstance(x, (int, float)) and isinstance(y, (int, float)) and y > 0 else None


def task_line(row: Any, baseline: str = "ft", treatment: str = "raft") -> str | None:
    """The answer for one analysed task (None when it has no RAFT-vs-FT comparison)."""
    if row.delta is None:
        return None
    diff = contrast_intervals(row.delta)  # raw differences treatment − baseline
    acc, ece = diff["accuracy"], _negated(diff["ece"])  # ΔECE: positive when the treatment is better calibrated
    line = (f"{row.task}: {treatment.upper()} vs {baseline.upper()} ΔAcc {_with_ci(acc)}, "
            f"ΔECE {_with_ci(ece)}")
    tokens = _ratio(row.cost, treatment, baseline, "tokens_per_question")
    if tokens is not None:
        line += f", at {tokens:.1f}× the tokens per question"
    words = [w for w in (_direction(acc, "more accurate", "less accurate"),
                         _direction(ece, "better calibrated", "worse calibrated")) if w]
    line += " → " + (", ".join(words) if words else "no difference the CIs can resolve")
    caveats = getattr(row, "caveats", None) or []
    if caveats:
        line += f" ({'caveat' if len(caveats) == 1 else 'caveats'}: " + "; ".join(caveats) + ")"
    if not row.trustworthy:
        line += " (NOT TRUSTWORTHY: " + "; ".join(row.reasons) + ")"
    return line


def headline(result: AnalysisResult) -> list[str]:
    """Per-task answer lines, then the ΔECE-vs-ΔAcc fit over tasks (or why there is none)."""
    baseline, treatment = result.settings.get("baseline", "ft"), result.settings.get("treatment", "raft")
    lines = [line for row in result.tasks if (line := task_line(row, baseline, treatment))]
    f = result.fit
    if f is not None and f.r is not None:
        lines.append(fit_line(f))
    else:
        reason = next((n for n in result.notes if n.startswith("no ΔECE-vs-ΔAcc fit")), "no across-task fit")
        lines.append(reason[0].upper() + reason[1:])
    if result.other_fit is not None and result.other_fit.r is not None:
        lines.append(fit_line(result.other_fit))
    lines += [validation_line(v) for v in result.validation]
    return lines


def validation_line(v: Any) -> str:
    """``Validation task subj (left out of the fit): ΔAcc +0.100, ΔECE +0.020 observed, +0.035 predicted
    [-0.050, +0.120]: inside the prediction interval``."""
    where = ""
    if v.interval is not None:
        where = (f" [{v.interval.low:+.3f}, {v.interval.high:+.3f}]: "
                 + ("inside the prediction interval" if v.inside else "OUTSIDE the prediction interval"))
    return (f"Validation task {v.task} (left out of the fit): ΔAcc {v.delta_acc:+.3f}, ΔECE {v.delta_ece:+.3f} "
            f"observed, {v.predicted_delta_ece:+.3f} predicted{where}")


def fit_line(f: Any) -> str:
    """``Across all 18 tasks: ΔECE = … (Pearson r = …, p = … two-sided, … one-tailed (H1: r > 0))``."""
    return (f"Across {f.tasks_text()}: ΔECE = {f.slope:.3f}·ΔAcc {f.intercept:+.3f}, Pearson "
            f"{f.stats_text()}")
