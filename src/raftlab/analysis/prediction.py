"""Predicting the accuracy gain of RAFT over FT (ΔAcc) from a task-difficulty metric.

The paper's two fits (Zhu et al., 2025, section 4.3):

* Eq. 9, ``ΔAcc = 0.0029·Len(R_LLaMA2) − 0.5567``: ``Len`` is the mean length of the rationales that the
  untrained LLaMA-2-7B base model writes under mix-of-task prompting, with 3 demonstrations (teacher
  rationales) from 3 other tasks (Eq. 8; difficulty metric 2). The paper does not state the unit; raftlab
  computes it in whitespace words (:func:`raftlab.analysis.difficulty.base_model_rationale_length`).
* Eq. 10, printed ``ΔAcc = 0.8031·Acc_FT + 0.6730``. **Departure:** raftlab uses slope **−0.8031**. The
  printed sign contradicts the paper's argument (lower FT accuracy = harder task = larger gain), its Fig. 5 with
  reversed x-ticks and its positive Table 10 correlation with difficulty. It also cannot reproduce the reported
  points: GSM8K's ΔAcc = +0.509 (Table 6) would need Acc_FT = −0.20 with +0.8031, but needs Acc_FT = 0.20 with
  −0.8031 (QQP: −0.092 → 0.95; CR: −0.002 → 0.84), which are plausible LLaMA-2-7B accuracies.

The ranges of x the fits were made on are not printed. raftlab uses the x values at which the fits give the
extreme reported ΔAccs (QQP −0.092, GSM8K +0.509): Acc_FT in [0.20, 0.95], Len in [160, 367]. Predictions
outside the range carry a warning, and ΔAcc is clamped to [−1, 1]. The published fits come without their points,
so they give no prediction interval. A fit of your own study (with its points) gives a 95% one.
"""

from __future__ import annotations

import math
from pathlib import Path

from pydantic import BaseModel, Field

from raftlab.analysis.models import Interval, OLSFit
from raftlab.analysis.ols import load_fit

#: The paper's published fits (see the module docstring for the sign of Eq. 10 and the ranges).
PUBLISHED_FITS: dict[str, OLSFit] = {
    "length": OLSFit(x="length", y="delta_acc", slope=0.0029, intercept=-0.5567, x_range=[160.0, 367.0],
                     source="paper Eq. 9 (Len: LLaMA-2-7B-base rationales under mix-of-task prompting)"),
    "acc_ft": OLSFit(x="acc_ft", y="delta_acc", slope=-0.8031, intercept=0.6730, x_range=[0.20, 0.95],
                     source="paper Eq. 10 with slope -0.8031 (printed +0.8031; the sign that reproduces its points)"),
}

#: What each metric's value must be, for `raftlab predict --metric`.
METRIC_UNITS = {
    "length": "mean length in words of the rationales an untrained base model writes under mix-of-task "
              "prompting (Eq. 8: 3 demonstrations, teacher rationales of 3 other tasks); the paper fit it on "
              "LLaMA-2-7B-base and does not state its unit",
    "acc_ft": "accuracy in [0, 1] of label-only finetuning (FT) on the task",
}


class GainPrediction(BaseModel):
    """``delta_acc`` predicted from ``value`` of difficulty ``metric`` by ``fit`` (clamped to [−1, 1])."""

    metric: str
    value: float
    delta_acc: float
    unclamped: float
    interval: Interval | None = Field(None, description="95% prediction interval (fits with their points only)")
    warnings: list[str] = Field(default_factory=list)
    fit: OLSFit


def prediction_interval(fit: OLSFit, x: float, alpha: float = 0.05) -> Interval | None:
    """The OLS prediction interval of a new task's y at ``x`` (needs the fit's points, at least 3)."""
    from scipy import stats

    pts = [(float(p["x"]), float(p["y"])) for p in fit.points if "x" in p and "y" in p]
    n = len(pts)
    if n < 3:
        return None
    xs = [a for a, _ in pts]
    mean_x = sum(xs) / n
    sxx = sum((a - mean_x) ** 2 for a in xs)
    resid = sum((b - fit.predict(a)) ** 2 for a, b in pts)
    if sxx == 0:
        return None
    s = math.sqrt(resid / (n - 2))
    half = stats.t.ppf(1 - alpha / 2, n - 2) * s * math.sqrt(1 + 1 / n + (x - mean_x) ** 2 / sxx)
    y = fit.predict(x)
    return Interval(value=y, low=y - half, high=y + half)


def predict_gain(metric: str, value: float, fit: OLSFit | str | Path | None = None) -> GainPrediction:
    """ΔAcc predicted for a task whose difficulty ``metric`` ("length" or "acc_ft") equals ``value``.

    ``fit`` is None (the paper's published fit), an :class:`OLSFit`, or the path of a JSON
    written by :func:`raftlab.analysis.save_fit` or an ``analysis.json`` of your own study
    (the fit of ``delta_acc`` on ``metric`` is taken from it).
    """
    if fit is None:
        if metric not in PUBLISHED_FITS:
            raise ValueError(f"no published fit for metric {metric!r}; choose one of {sorted(PUBLISHED_FITS)} "
                             f"or pass your own fit")
        chosen = PUBLISHED_FITS[metric]
    elif isinstance(fit, OLSFit):
        chosen = fit
    else:
        chosen = load_fit(fit, x=metric, y="delta_acc")
    if chosen.x != metric:
        raise ValueError(f"the fit is of {chosen.y} on {chosen.x!r}, not on {metric!r}")
    if metric == "acc_ft" and not 0.0 <= value <= 1.0:
        raise ValueError(f"acc_ft is an accuracy in [0, 1], got {value}")
    raw = chosen.predict(value)
    warnings = []
    if chosen.x_range and not chosen.x_range[0] <= value <= chosen.x_range[1]:
        warnings.append(f"{metric} = {value:g} is outside the range the fit was made on "
                        f"[{chosen.x_range[0]:g}, {chosen.x_range[1]:g}]: an extrapolation")
    clamped = min(1.0, max(-1.0, raw))
    if clamped != raw:
        warnings.append(f"the fit gives ΔAcc = {raw:+.3f}, outside [-1, 1]; clamped to {clamped:+.0f}")
    interval = prediction_interval(chosen, value)
    if interval is not None:
        interval = Interval(value=clamped, low=max(-1.0, interval.low), high=min(1.0, interval.high))
    return GainPrediction(metric=metric, value=float(value), delta_acc=clamped, unclamped=raw, interval=interval,
                          warnings=warnings, fit=chosen)
