"""Report figures (matplotlib, Agg backend). Each function returns a Figure."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from raftlab.report.data import Interval, OLSFit, ReliabilityBin, ReportData, SizePoint  # noqa: E402

ARM_COLORS = {"ft": "#4C72B0", "raft": "#DD8452", "blank": "#55A868", "align": "#C44E52"}


def _color(arm: str, i: int) -> str:
    return ARM_COLORS.get(arm, plt.rcParams["axes.prop_cycle"].by_key()["color"][i % 10])


def _fmt_p(p: float | None) -> str:
    if p is None or not np.isfinite(p):
        return "n/a"
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


def _yerr(intervals: list[Interval | None]) -> np.ndarray:
    """Asymmetric error bars (2 x n) from CIs; zero where a CI is missing."""
    lo, hi = [], []
    for iv in intervals:
        if iv is None or iv.low is None or iv.high is None:
            lo.append(0.0)
            hi.append(0.0)
        else:
            lo.append(max(0.0, iv.value - iv.low))
            hi.append(max(0.0, iv.high - iv.value))
    return np.array([lo, hi])


#: Axis labels of the two deltas (positive: RAFT better).
DELTA_LABELS = ("ΔAcc = Acc(RAFT) − Acc(FT)", "ΔECE = −(ECE(RAFT) − ECE(FT))")
#: How points of tasks that fail an artifact check are drawn (a distinct marker, with its own legend entry).
FLAGGED_STYLE = dict(marker="X", color="#C44E52", linestyle="none", ms=8, label="failed an artifact check")
FIT_STYLES = ({"ls": "--", "color": "#333333"}, {"ls": ":", "color": "#8172B2"})  # main fit, other task set


def _tasks(f: OLSFit) -> str:
    if f.task_set == "trustworthy":
        return f"{f.n} trustworthy tasks"
    return f"all {f.n} tasks" if f.task_set == "all" else f"{f.n} tasks"


def _fit_label(f: OLSFit, y: str, x: str) -> str:
    r = f"{f.r:.2f}" if f.r is not None else "n/a"
    return (f"{_tasks(f)}: {y} = {f.slope:.3g}·{x} {f.intercept:+.3g} (r={r}, one-tailed p={_fmt_p(f.p_one_sided)}, "
            f"{f.h1()})")


def _draw_fits(ax, fits: list[OLSFit | None], span: np.ndarray, y: str, x: str) -> None:
    for f, style in zip(fits, FIT_STYLES):
        if f is not None:
            ax.plot(span, f.slope * span + f.intercept, label=_fit_label(f, y, x), **style)


def _legend_below(ax, fontsize: int) -> None:
    """The legend under the axes, where the long fit labels cover no point."""
    ax.legend(fontsize=fontsize, loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False)


def delta_scatter(data: ReportData) -> Figure:
    """ΔAcc (x) vs ΔECE (y) per task, with the fitted OLS line(s), Pearson r and the one-tailed p. Tasks that
    failed an artifact check are drawn with :data:`FLAGGED_STYLE` (legend entry "failed an artifact check"),
    labelled "(not trustworthy)"; when there are any, the fit is drawn both ways (all tasks, as the paper, and
    trustworthy tasks only). Validation tasks (left out of the fits) are green crosses, as in the paper's Fig. 5."""
    rows = [t for t in data.tasks if t.delta_acc is not None and t.delta_ece is not None]
    fig, ax = plt.subplots(figsize=(7, 6))
    xs = np.array([t.delta_acc.value for t in rows])
    ys = np.array([t.delta_ece.value for t in rows])
    flagged_style = {k: v for k, v in FLAGGED_STYLE.items() if k not in ("marker", "linestyle")}
    groups = ((lambda t: t.role == "fit" and t.trustworthy, dict(fmt="o", color="#4C72B0", label="tasks")),
              (lambda t: t.role == "fit" and not t.trustworthy, dict(fmt=FLAGGED_STYLE["marker"], **flagged_style)),
              (lambda t: t.role == "validation", dict(fmt="x", color="#2CA02C", markersize=9,
                                                      label="validation tasks (not in the fit)")))
    for member, style in groups:
        part = [i for i, t in enumerate(rows) if member(t)]
        if part:
            ax.errorbar(xs[part], ys[part], xerr=_yerr([rows[i].delta_acc for i in part]),
                        yerr=_yerr([rows[i].delta_ece for i in part]), ecolor="#999999", capsize=2, **style)
    for t, x, y in zip(rows, xs, ys):
        ax.annotate(t.task if t.trustworthy else f"{t.task} (not trustworthy)", (x, y), textcoords="offset points",
                    xytext=(4, 4), fontsize=8)
    if len(xs):
        span = np.linspace(min(xs.min(), 0.0) - 0.02, max(xs.max(), 0.0) + 0.02, 50)
        _draw_fits(ax, [data.fit, data.other_fit], span, "ΔECE", "ΔAcc")
    ax.axhline(0, color="#bbbbbb", lw=0.8)
    ax.axvline(0, color="#bbbbbb", lw=0.8)
    ax.set_xlabel(DELTA_LABELS[0])
    ax.set_ylabel(DELTA_LABELS[1])
    ax.set_title("Accuracy gain vs calibration gain of RAFT over FT")
    _legend_below(ax, 7)
    fig.tight_layout()
    return fig


def delta_bars(data: ReportData) -> Figure:
    """Per-task bars of ΔAcc and ΔECE with CI error bars."""
    rows = [t for t in data.tasks if t.delta_acc is not None]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(rows) + 2), 4))
    x = np.arange(len(rows))
    w = 0.38
    ax.bar(x - w / 2, [t.delta_acc.value for t in rows], w, yerr=_yerr([t.delta_acc for t in rows]),
           capsize=3, label="ΔAcc", color="#4C72B0")
    ece = [t.delta_ece for t in rows]
    ax.bar(x + w / 2, [iv.value if iv else 0.0 for iv in ece], w, yerr=_yerr(ece),
           capsize=3, label="ΔECE", color="#DD8452")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, [t.task for t in rows], rotation=30, ha="right")
    ax.set_ylabel("RAFT − FT (higher is better)")
    ax.set_title("Per-task gains of RAFT over FT (95% bootstrap CI)")
    ax.legend()
    fig.tight_layout()
    return fig


def reliability_diagram(task: str, bins_by_arm: dict[str, list[ReliabilityBin]],
                        ece_by_arm: dict[str, float] | None = None) -> Figure:
    """Accuracy vs confidence per bin, one panel per arm (e.g. FT and RAFT)."""
    arms = list(bins_by_arm)
    fig, axes = plt.subplots(1, max(1, len(arms)), figsize=(3.2 * max(1, len(arms)), 3.3), squeeze=False)
    for i, (ax, arm) in enumerate(zip(axes[0], arms)):
        bins = [b for b in bins_by_arm[arm] if b.count > 0 and b.accuracy is not None]
        centers = [(b.low + b.high) / 2 for b in bins]
        widths = [b.high - b.low for b in bins]
        ax.bar(centers, [b.accuracy for b in bins], width=widths, edgecolor="black", color=_color(arm, i),
               alpha=0.8, label="accuracy")
        conf = [b.confidence if b.confidence is not None else c for b, c in zip(bins, centers)]
        ax.bar(centers, np.array(conf) - np.array([b.accuracy for b in bins]), bottom=[b.accuracy for b in bins],
               width=widths, color="none", edgecolor="#C44E52", hatch="//", label="gap")
        ax.plot([0, 1], [0, 1], ":", color="gray")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        if i == 0:
            ax.set_ylabel("accuracy")
        ece = (ece_by_arm or {}).get(arm)
        ax.set_title(f"{task} · {arm.upper()}" + (f" (ECE {ece:.3f})" if ece is not None else ""), fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def difficulty_plot(data: ReportData, metric: str) -> Figure:
    """A difficulty metric (x) against ΔAcc and ΔECE (y) per task, with the fitted lines (both task sets when a
    task is flagged; flagged tasks drawn with :data:`FLAGGED_STYLE`)."""
    rows = [t for t in data.tasks if metric in t.difficulty and t.delta_acc is not None]
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, target in zip(axes, ("delta_acc", "delta_ece")):
        pts = [(t.difficulty[metric], getattr(t, target).value, t) for t in rows if getattr(t, target)]
        if pts:
            xs = [x for x, _, _ in pts]
            for trusted in (True, False):
                part = [(x, y) for x, y, t in pts if t.trustworthy == trusted]
                if part and trusted:
                    ax.scatter(*zip(*part), color="#4C72B0")
                elif part:
                    ax.plot(*zip(*part), **FLAGGED_STYLE)
            for x, y, t in pts:
                ax.annotate(t.task, (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
            fits = [next((f for f in group if f.x == metric and f.y == target), None)
                    for group in (data.difficulty_fits, data.other_difficulty_fits)]
            _draw_fits(ax, fits, np.linspace(min(xs), max(xs), 20), "ΔAcc" if target == "delta_acc" else "ΔECE",
                       metric)
            if ax.get_legend_handles_labels()[0]:
                _legend_below(ax, 6)
        ax.axhline(0, color="#bbbbbb", lw=0.8)
        ax.set_xlabel(metric)
        ax.set_ylabel("ΔAcc" if target == "delta_acc" else "ΔECE")
    fig.suptitle(f"Task difficulty ({metric}) vs gains of RAFT")
    fig.tight_layout()
    return fig


def info_gain_plot(task: str, curves: dict[str, list[float]], step: str = "sentences") -> Figure:
    """P(final answer) after each rationale prefix of 0, 1, ... ``step`` (tokens: the paper's sampled procedure;
    sentences: raftlab's scored variant)."""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for i, (label, ys) in enumerate(curves.items()):
        ax.plot(np.arange(len(ys)), ys, marker="o", ms=3, label=label, color=_color(label, i))
    ax.set_xlabel(f"rationale prefix ({step})")
    ax.set_ylabel("P(final answer)")
    peak = max((max(ys) for ys in curves.values() if ys), default=1.0)
    if 0 < peak < 0.05:  # an untrained/weak model: show the orders of magnitude
        ax.set_yscale("log")
    else:
        ax.set_ylim(0, 1)
    ax.set_title(f"Information gain · {task}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def learning_curve_plot(task: str, points: list[SizePoint]) -> Figure:
    """ΔAcc and ΔECE of RAFT over FT (y, 95% CI bars) against the examples trained on (x), one panel each; the
    full-size arms' point drawn apart. A log x axis when the sizes span 8x or more."""
    xs = np.array([p.n_train if p.n_train is not None else p.size for p in points], dtype=float)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, target, label, color, ylabel in zip(axes, ("delta_acc", "delta_ece"), ("ΔAcc", "ΔECE"),
                                                ("#4C72B0", "#DD8452"), DELTA_LABELS):
        ivs = [getattr(p.delta, target) for p in points]
        ys = np.array([iv.value for iv in ivs])
        ax.errorbar(xs, ys, yerr=_yerr(ivs), fmt="-o", color=color, ecolor="#999999", capsize=3, label=label)
        full = [i for i, p in enumerate(points) if p.full]
        if full:
            ax.plot(xs[full], ys[full], marker="s", ms=9, mfc="none", mec="black", linestyle="none",
                    label="full-size arms")
        ax.axhline(0, color="#bbbbbb", lw=0.8)
        if len(xs) and xs.min() > 0 and xs.max() / xs.min() >= 8:
            ax.set_xscale("log")
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.minorticks_off()
        ax.set_xlabel("training examples (FT and RAFT: the same questions)")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    fig.suptitle(f"Where rationales stop helping · {task} (95% bootstrap CI)")
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, out_dir: Path, name: str) -> bytes:
    """Write ``name.png`` and ``name.pdf`` to ``out_dir``; return the PNG bytes (for embedding)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    png = buf.getvalue()
    (out_dir / f"{name}.png").write_bytes(png)
    fig.savefig(out_dir / f"{name}.pdf")
    plt.close(fig)
    return png
