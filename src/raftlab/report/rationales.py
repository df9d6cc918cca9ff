"""The report's rationale section: per task, the teacher's kept rate, the gold filter's rejections by reason, the
kept rationales' length distribution, the judge's verdicts (when a judge stage ran) and three kept rationales
verbatim. Read from ``RUN/rationales/<task>/`` (``stats.json``, ``rationales.jsonl``) and ``RUN/judge/<task>/``."""

from __future__ import annotations

import random
from html import escape
from pathlib import Path
from typing import Any

from raftlab import layout
from raftlab.corrupt import read_json
from raftlab.report.data import RationaleExample, RationaleSummary, ReportData

#: The page section (and figure section) of the teacher's rationales.
SECTION = "Teacher rationales"
#: Kept rationales shown verbatim per task.
SHOWN = 3
_VERDICTS = ("helpful", "unhelpful", "unknown")


def add_rationales(data: ReportData, run_dir: Path, stages: frozenset[str] | None = None) -> ReportData:
    """A :class:`RationaleSummary` per ``RUN/rationales/<task>/`` holding kept rationales (only the rationale and
    judge stages in ``stages`` when given)."""
    for task, folder in layout.rationale_dirs(run_dir).items():
        if stages is not None and layout.rationales(task) not in stages:
            continue
        judge = run_dir / layout.judge(task) / layout.JUDGE_FILE
        judged = judge.is_file() and (stages is None or layout.judge(task) in stages)
        data.rationales[task] = summarize(task, folder, judge if judged else None)
    return data


def summarize(task: str, folder: Path, judge_file: Path | None = None) -> RationaleSummary:
    """One task's summary from its rationale stage folder and, when given, its judge stage's ``judge.json``."""
    import numpy as np

    from raftlab.storage import read_jsonl

    rows = [r for r in read_jsonl(folder / layout.RATIONALES_FILE) if r.get("rationale")]
    fix = "delete it (the report then leaves it out)"
    stats = read_json(folder / layout.RATIONALE_STATS, fix) if (folder / layout.RATIONALE_STATS).is_file() else {}
    rejections = {str(k): int(v) for k, v in (stats.get("rejections") or {}).items()}
    errors = {str(k): int(v) for k, v in (stats.get("error_counts") or {}).items() if k not in rejections}
    judge = read_json(judge_file, fix) if judge_file is not None else None
    verdicts = (judge or {}).get("verdicts") or {}
    lengths = np.array([len(str(r["rationale"]).split()) for r in rows], dtype=float)
    quantiles: dict[str, float] = {}
    bins: list[tuple[float, float, int]] = []
    if lengths.size:
        quantiles = {name: float(np.percentile(lengths, q)) for name, q in
                     (("min", 0), ("p25", 25), ("median", 50), ("p75", 75), ("max", 100))}
        quantiles["mean"] = float(lengths.mean())
        counts, edges = np.histogram(lengths, bins=min(12, len(np.unique(lengths))))
        bins = [(float(lo), float(hi), int(c)) for lo, hi, c in zip(edges[:-1], edges[1:], counts)]
    shown = sorted(random.Random(f"rationales:{task}").sample(range(len(rows)), min(SHOWN, len(rows))))
    examples = [RationaleExample(id=str(rows[i].get("id", "")), question=str(rows[i].get("question", "")),
                                 label=str(rows[i].get("label", "")), rationale=str(rows[i]["rationale"]),
                                 verdict=verdicts.get(str(rows[i].get("id")))) for i in shown]
    return RationaleSummary(
        task=task, kept=int(stats.get("kept", len(rows))), trained=len(rows), attempted=stats.get("examples_attempted"),
        attempts=stats.get("attempts"), pending=stats.get("pending"), rejections=rejections, errors=errors,
        lengths=quantiles, length_bins=bins,
        judge={k: v for k, v in judge.items() if k != "verdicts"} if judge is not None else None, examples=examples)


def lengths_figure(summaries: dict[str, RationaleSummary]) -> Any:
    """One small histogram of kept-rationale lengths per task."""
    from raftlab.report.figures import plt

    tasks = [t for t, s in summaries.items() if s.length_bins]
    cols = min(4, len(tasks))
    rows = -(-len(tasks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.flat[len(tasks):]:
        ax.axis("off")
    for ax, task in zip(axes.flat, tasks):
        s = summaries[task]
        lows, highs, counts = zip(*s.length_bins)
        ax.bar(lows, counts, width=[max(h - lo, 0.5) for lo, h in zip(lows, highs)], align="edge",
               color="#4C72B0", edgecolor="white")
        ax.set_title(f"{task} (n={s.trained if s.trained is not None else s.kept})", fontsize=9)
        ax.set_xlabel(f"length ({s.length_unit})", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def _count(v: Any) -> str:
    return "–" if v is None else escape(str(v))


def _judge_cell(judge: dict[str, Any] | None) -> str:
    if judge is None:
        return "not judged"
    counts = " / ".join(str(judge.get(v, 0)) for v in _VERDICTS)
    return f"{counts} of {judge.get('judged', 0)} ({escape(str(judge.get('backend', '?')))})"


def rationales_html(data: ReportData, figures: str = "") -> str:
    """The section (empty when the run has no kept rationales to show); ``figures``: its figures' HTML."""
    if not data.rationales:
        return ""
    summaries = list(data.rationales.values())
    rows = []
    for s in summaries:
        q = s.lengths
        length = " / ".join(f"{q[k]:.0f}" for k in ("min", "p25", "median", "p75", "max")) if q else "–"
        if q:
            length += f" (mean {q['mean']:.1f})"
        trained = f" (trained on {s.trained})" if s.trained is not None and s.trained != s.kept else ""
        rows.append(f'<tr data-task="{escape(s.task)}"><td>{escape(s.task)}</td><td>{s.kept} / '
                    f"{_count(s.attempted)}{trained}</td><td>{_pct(s.kept_rate)}</td><td>{_pct(s.pass_rate)} of "
                    f"{_count(s.attempts)}</td><td>{length}</td><td>{_judge_cell(s.judge)}</td></tr>")
    table = ('<table id="rationales"><tr><th>task</th><th>kept / examples</th><th>kept rate</th>'
             "<th>attempts passed</th><th>length in words: min / 25% / median / 75% / max</th>"
             "<th>judge: helpful / unhelpful / unknown</th></tr>" + "".join(rows) + "</table>")
    parts = [f"<h2>{escape(SECTION)}</h2>",
             "<p>Per task: the training examples whose teacher rationale passed the gold filter (kept rate), the "
             "share of all teacher attempts that passed, why the other attempts were rejected, the kept "
             "rationales' lengths, and the LLM judge's verdicts on a seeded sample of them (the paper's App. C; "
             "shown when the study ran a judge). Below, three kept rationales per task, verbatim.</p>",
             table, rejections_html(summaries)]
    if figures:
        parts.append(f'<div class="grid">{figures}</div>')
    for s in summaries:
        parts.append(f'<h3>{escape(s.task)}</h3><div class="rationales" data-task="{escape(s.task)}">')
        for ex in s.examples:
            verdict = f" · judge: {escape(ex.verdict)}" if ex.verdict else ""
            parts.append(f'<p class="meta">{escape(ex.id)} · answer {escape(ex.label)}{verdict}</p>'
                         f'<pre class="sample">{escape(ex.question)}</pre>'
                         f'<pre class="sample" data-rationale="{escape(ex.id)}">{escape(ex.rationale)}</pre>')
        parts.append("</div>")
    return "".join(parts)


def rejections_html(summaries: list[RationaleSummary]) -> str:
    """Rejected attempts per gold-filter reason (the reasons some task met), and other failed attempts."""
    reasons = [r for r in dict.fromkeys(r for s in summaries for r in s.rejections)
               if any(s.rejections.get(r) for s in summaries)]
    others = list(dict.fromkeys(e for s in summaries for e in s.errors))
    if not any(s.attempts is not None for s in summaries):
        return "<p>No teacher statistics were recorded (no stats.json), so no rejections are shown.</p>"
    if not reasons and not others:
        return '<p id="rationale-rejections">The gold filter rejected no attempt.</p>'
    head = "".join(f"<th>{escape(r)}</th>" for r in [*reasons, *others])
    body = "".join(f'<tr data-task="{escape(s.task)}"><td>{escape(s.task)}</td>'
                   + "".join(f"<td>{s.rejections.get(r, 0)}</td>" for r in reasons)
                   + "".join(f"<td>{s.errors.get(e, 0)}</td>" for e in others) + "</tr>" for s in summaries)
    return ('<p>Rejected attempts by reason (raftlab.rationales.gold_filter; an example is retried until one '
            f'passes or its attempts run out):</p><table id="rationale-rejections"><tr><th>task</th>{head}</tr>'
            f"{body}</table>")
