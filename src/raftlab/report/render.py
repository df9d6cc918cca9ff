"""``render_report``: figures (PNG + PDF), tables (CSV, JSON, LaTeX) and one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raftlab.report import figures as F
from raftlab.report.data import ReportData
from raftlab.report.html_page import render_page
from raftlab.report.rationales import SECTION as RATIONALES
from raftlab.report.rationales import lengths_figure
from raftlab.report.tables import latex_table, write_csv, write_four_arms_csv, write_json, write_latex
from raftlab.storage import atomic_write_text

REPORT_FILE = "report.html"


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def draw_figures(data: ReportData, fig_dir: Path) -> tuple[list[tuple[str, bytes, str]], dict[str, list[str]]]:
    """Draw every figure the data supports; return (id, png, caption) triples and the page sections."""
    figs: list[tuple[str, bytes, str]] = []
    sections: dict[str, list[str]] = {"Accuracy vs calibration": [], "Reliability diagrams": [],
                                      "Difficulty": [], "Information gain": [], "Learning curves": [],
                                      RATIONALES: []}

    def add(section: str, fid: str, fig: Any, caption: str) -> None:
        figs.append((fid, F.save_figure(fig, fig_dir, fid), caption))
        sections[section].append(fid)

    if any(t.delta_acc is not None and t.delta_ece is not None for t in data.tasks):
        add("Accuracy vs calibration", "delta_scatter", F.delta_scatter(data),
            "ΔAcc vs ΔECE per task with the OLS fit (Pearson r, one-tailed p). Tasks that fail an artifact "
            "check are marked with a cross; when there are any, the fit is drawn over all tasks (as the paper) "
            "and over the trustworthy tasks only.")
        add("Accuracy vs calibration", "delta_bars", F.delta_bars(data),
            "Per-task ΔAcc and ΔECE of RAFT over FT with 95% bootstrap CIs.")
    for task, bins_by_arm in data.reliability.items():
        ece = {arm: m["ece"] for arm, m in data.task(task).metrics.items() if "ece" in m} \
            if any(t.task == task for t in data.tasks) else None
        add("Reliability diagrams", f"reliability_{_safe_name(task)}", F.reliability_diagram(task, bins_by_arm, ece),
            f"Reliability diagram for {task}: accuracy vs self-consistency confidence per arm.")
    for metric in sorted({k for t in data.tasks for k in t.difficulty}):
        add("Difficulty", f"difficulty_{_safe_name(metric)}", F.difficulty_plot(data, metric),
            f"Difficulty metric {metric} vs ΔAcc and ΔECE.")
    for task, curves in data.info_gain.items():
        if curves:
            step = data.info_gain_steps.get(task, "sentences")
            add("Information gain", f"info_gain_{_safe_name(task)}", F.info_gain_plot(task, curves, step),
                f"Probability of the final answer after each rationale prefix ({task}).")
    if any(s.length_bins for s in data.rationales.values()):
        add(RATIONALES, "rationale_lengths", lengths_figure(data.rationales),
            "Length (words) of the kept teacher rationales, per task.")
    for task, points in data.learning_curves.items():
        add("Learning curves", f"learning_curve_{_safe_name(task)}", F.learning_curve_plot(task, points),
            f"ΔAcc and ΔECE of RAFT over FT against the training-set size ({task}): both arms trained on the same "
            "seeded subset of the kept-rationale examples (nested across sizes), the last point the full-size "
            "arms; 95% bootstrap CIs.")
    return figs, sections


def render_report(source: Any, out_dir: str | Path | None = None, *, samples_per_task: int = 3,
                  meta: dict[str, Any] | None = None, stages: frozenset[str] | None = None) -> Path:
    """Write the report for ``source`` into ``out_dir`` and return the HTML file's path.

    ``source`` is a run directory (its ``eval/`` records are analysed with :mod:`raftlab.analysis`),
    an analysis result, or a :class:`ReportData`. ``out_dir`` defaults to ``RUN/report``.
    Files: ``report.html`` (self-contained), ``figures/*.png|pdf``, ``tables/summary.csv|json``,
    ``tables/summary.tex``.
    """
    from raftlab.report.build import report_data

    data = report_data(source, samples_per_task=samples_per_task, meta=meta, stages=stages)
    if out_dir is None:
        if not isinstance(source, (str, Path)):
            raise ValueError("out_dir is required when the source is not a run directory")
        out_dir = Path(source) / "report"
    out = Path(out_dir)
    tables = out / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    figs, sections = draw_figures(data, out / "figures")
    write_csv(data, tables / "summary.csv")
    write_four_arms_csv(data, tables / "four_arms.csv")
    write_json(data, tables / "summary.json")
    write_latex(data, tables / "summary.tex")
    page = out / REPORT_FILE
    atomic_write_text(page, render_page(data, figs, sections, latex_table(data)))
    return page
