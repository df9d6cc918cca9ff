"""Report tables: per-task summary as CSV, JSON and a LaTeX table."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from raftlab.report.data import Interval, ReportData


def summary_rows(data: ReportData) -> list[dict[str, object]]:
    """One flat row per task: n, metrics per arm, deltas with CIs, difficulty metrics, cost, how each arm's
    training ended and the caveats on ΔAcc."""
    rows = []
    for t in data.tasks:
        row: dict[str, object] = {"task": t.task, "n": t.n}
        for arm in data.arms:
            for metric in ("accuracy", "ece"):
                if metric in t.metrics.get(arm, {}):
                    row[f"{metric}_{arm}"] = t.metrics[arm][metric]
        for name in ("delta_acc", "delta_ece"):
            iv: Interval | None = getattr(t, name)
            row[name] = iv.value if iv else None
            row[f"{name}_low"] = iv.low if iv else None
            row[f"{name}_high"] = iv.high if iv else None
        for arm, deltas in t.arm_deltas.items():
            for name, iv in deltas.items():
                row[f"{name}_{arm}"], row[f"{name}_{arm}_low"], row[f"{name}_{arm}_high"] = iv.value, iv.low, iv.high
        for k, v in t.difficulty.items():
            row[f"difficulty_{k}"] = v
        for arm, cost in t.cost.items():
            for key in ("tokens_per_question", "seconds_per_question", "train_seconds", "trained_tokens"):
                if isinstance(cost.get(key), (int, float)):
                    row[f"{key}_{arm}"] = cost[key]
        for arm, trained in t.training.items():
            for key in ("stop_reason", "steps", "best_step", "still_improving"):
                if trained.get(key) is not None:
                    row[f"{key}_{arm}"] = trained[key]
        if t.caveats:
            row["caveats"] = "; ".join(t.caveats)
        rows.append(row)
    return rows


def _write_rows(rows: list[dict], path: Path) -> Path:
    """``rows`` as CSV, the columns in the order they first appear."""
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_csv(data: ReportData, path: Path) -> Path:
    return _write_rows(summary_rows(data), path)


def write_four_arms_csv(data: ReportData, path: Path) -> Path | None:
    """The four-arm table (:func:`raftlab.analysis.four_arm_rows`) as CSV; None when no task has the arms."""
    return _write_rows(data.four_arms, path) if data.four_arms else None


def write_json(data: ReportData, path: Path) -> Path:
    """The full report data (rows, fits, bins, curves; not the output samples)."""
    payload = data.model_dump(mode="json", exclude={"samples"})
    payload["rows"] = summary_rows(data)
    path.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return path


_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(c, c) for c in text)


def _pct(v: float | None) -> str:
    return "--" if v is None else f"{100 * v:.1f}"


def _pct_ci(iv: Interval | None) -> str:
    return "--" if iv is None else iv.text(1, scale=100)


def latex_table(data: ReportData) -> str:
    """A booktabs table: accuracy and ECE (in %) of FT and RAFT, and the deltas with CIs."""
    lines = [
        r"\begin{table}[t]", r"\centering", r"\small",
        r"\begin{tabular}{lrrrrll}", r"\toprule",
        r"Task & Acc$_{FT}$ & Acc$_{RAFT}$ & ECE$_{FT}$ & ECE$_{RAFT}$ & $\Delta$Acc & $\Delta$ECE \\",
        r"\midrule",
    ]
    for t in data.tasks:
        ft, raft = t.metrics.get("ft", {}), t.metrics.get("raft", {})
        lines.append(" & ".join([
            latex_escape(t.task), _pct(ft.get("accuracy")), _pct(raft.get("accuracy")),
            _pct(ft.get("ece")), _pct(raft.get("ece")), _pct_ci(t.delta_acc), _pct_ci(t.delta_ece),
        ]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    caption = r"Accuracy and ECE (\%) of label-only finetuning (FT) and rationale-augmented finetuning (RAFT)."
    for f in (data.fit, data.other_fit):
        if f is not None and f.r is not None:
            caption += (f" OLS over {latex_escape(f.tasks_text())}: $\\Delta$ECE $= {f.slope:.3f}\\,\\Delta$Acc "
                        f"${f.intercept:+.3f}$, $r={f.r:.2f}$")
            if f.p_one_sided is not None:
                sign = ">" if f.direction == "positive" else "<"
                caption += f", one-tailed $p={f.p_one_sided:.2g}$ ($H_1$: $r {sign} 0$)"
            caption += "."
    lines += [r"\caption{" + caption + "}", r"\label{tab:raft-vs-ft}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def four_arm_latex(data: ReportData) -> str:
    """The paper's Fig. 4 layout: ECE of ①–④ and the differences, one column per task plus the average."""
    from raftlab.analysis.four_arms import CONTRASTS, PAPER_ARMS

    if not data.four_arms:
        return ""
    rows = data.four_arms
    lines = [r"\begin{table}[t]", r"\centering", r"\small", r"\begin{tabular}{l" + "r" * len(rows) + "}",
             r"\toprule", "Setting & " + " & ".join(latex_escape(str(r["task"])) for r in rows) + r" \\",
             r"\midrule"]

    def fmt(v: float | None, signed: bool) -> str:
        return "--" if v is None else (f"{v:+.3f}" if signed else f"{v:.3f}")

    for label in PAPER_ARMS.values():
        lines.append(f"{label} & " + " & ".join(fmt(r.get(f"ece_{label}"), False) for r in rows) + r" \\")
    lines.append(r"\midrule")
    for name, _, _ in CONTRASTS:
        lines.append(f"{name} & " + " & ".join(fmt(r.get(f"ece_{name}"), True) for r in rows) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}",
              r"\caption{ECE of the untrained model prompted without (1) and with (2) rationales, and finetuned "
              r"without (3, FT) and with (4, RAFT) rationales, as in the paper's Fig.~4.}",
              r"\label{tab:four-arms}", r"\end{table}"]
    return "\n".join(lines).replace("①", "(1)").replace("②", "(2)").replace("③", "(3)").replace("④", "(4)").replace("−", "$-$") + "\n"


def write_latex(data: ReportData, path: Path) -> Path:
    four = four_arm_latex(data)
    path.write_text(latex_table(data) + ("\n" + four if four else ""), encoding="utf-8")
    return path
