"""One self-contained HTML page: inline CSS, figures as base64 PNG, every piece of text escaped."""

from __future__ import annotations

import base64
import datetime as _dt
from html import escape

from raftlab.report.data import Interval, OLSFit, ReportData, TaskSummary
from raftlab.report.rationales import SECTION as RATIONALES
from raftlab.report.rationales import rationales_html

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}th,td{border:1px solid #ccc;padding:.25em .5em;
text-align:right}th:first-child,td:first-child{text-align:left}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.85em;color:#555}
pre.sample{white-space:pre-wrap;word-break:break-word;background:#f7f7f7;border:1px solid #e3e3e3;padding:.5em;
font-size:.8em;max-height:14em;overflow:auto}
.grid{display:flex;flex-wrap:wrap;gap:0 1.5em}.grid figure{flex:0 1 auto}
.ok{color:#1a7f37}.bad{color:#b42318}.meta{font-size:.8em;color:#555}
.caveat{font-size:.85em;color:#8a5a00;text-align:left;max-width:22em;margin-left:auto}
"""


_INTRO = (
    "<p>FT = label-only finetuning, RAFT = rationale-augmented finetuning. Each test question is answered "
    "k times (self-consistency); the majority answer is the prediction and its vote share the confidence. "
    "ΔAcc = Acc(RAFT) − Acc(FT); ΔECE = −(ECE(RAFT) − ECE(FT)), so positive values mean RAFT is better. "
    "Intervals are 95% bootstrap confidence intervals over questions.</p>")


def _num(v: object) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4f}"
    return escape(str(v))


def _ci(iv: Interval | None) -> str:
    return "–" if iv is None else iv.text()


def _p_text(f: OLSFit) -> str:
    """``r=…, p=… two-sided, … one-tailed (H1: r &gt; 0)`` (escaped)."""
    p = lambda v: "–" if v is None else f"{v:.3g}"  # noqa: E731  (p-values can be 1e-10)
    return f"r={_num(f.r)}, p={p(f.p)} two-sided, {p(f.p_one_sided)} one-tailed ({escape(f.h1())})"


def fit_html(f: OLSFit, fid: str) -> str:
    """One across-task ΔECE-vs-ΔAcc fit: its tasks, line, r and p-values (the one-tailed p in the direction the
    paper hypothesises, as its Tables 5, 9 and 10)."""
    return (f'<p id="{fid}">OLS fit over {escape(f.tasks_text())}: ΔECE = {f.slope:.4f}·ΔAcc {f.intercept:+.4f}; '
            f"Pearson {_p_text(f)}.</p>")


def figure_html(fig_id: str, png: bytes, caption: str) -> str:
    """An ``<figure>`` with the PNG embedded as a data URI."""
    b64 = base64.b64encode(png).decode("ascii")
    return (f'<figure id="fig-{escape(fig_id)}"><img alt="{escape(caption)}" data-figure="{escape(fig_id)}" '
            f'src="data:image/png;base64,{b64}"><figcaption>{escape(caption)}</figcaption></figure>')


COST_COLUMNS = (("tokens_per_question", "generated tokens / question", "{:.0f}"),
                ("seconds_per_question", "seconds / question", "{:.2f}"),
                ("train_seconds", "training seconds", "{:.0f}"),
                ("trained_tokens", "trained tokens", "{:,.0f}"))


def cost_html(data: ReportData) -> str:
    """Per task and arm: what an answer costs (tokens, seconds) and what training cost, with the machine."""
    from raftlab.machine import machine_line

    rows, machines = [], set()
    for t in data.tasks:
        for arm in [a for a in data.arms if a in t.cost] + [a for a in t.cost if a not in data.arms]:
            c = t.cost[arm]
            if isinstance(c.get("machine"), dict):
                machines.add(machine_line(c["machine"]))
            cells = "".join("<td>" + (fmt.format(c[key]) if isinstance(c.get(key), (int, float)) else "–") + "</td>"
                            for key, _, fmt in COST_COLUMNS)
            rows.append(f"<tr><td>{escape(t.task)}</td><td>{escape(arm)}</td>{cells}"
                        f"<td>{escape(str(c.get('backend') or '–'))}</td></tr>")
    if not rows:
        return ""
    head = "".join(f"<th>{escape(title)}</th>" for _, title, _ in COST_COLUMNS)
    where = "; ".join(sorted(machines)) or "not recorded"
    return (f'<table id="cost"><tr><th>task</th><th>arm</th>{head}<th>backend</th></tr>{"".join(rows)}</table>'
            f"<p>Measured on: {escape(where)}. Seconds per question: the wall time of each eval batch divided by its "
            "questions (k samples each); training: the Trainer's runtime and the tokens it processed "
            "(rows × epochs).</p>")


def four_arm_html(data: ReportData) -> str:
    """The paper's Fig. 4 table: accuracy and ECE of ①–④ and the differences, per task and averaged."""
    from raftlab.analysis.four_arms import ARM_DESCRIPTIONS, CONTRASTS, PAPER_ARMS

    if not data.four_arms:
        return ""
    labels = list(PAPER_ARMS.values())
    names = [name for name, _, _ in CONTRASTS]

    def cell(row: dict, key: str) -> str:
        value, low, high = row.get(key), row.get(f"{key}_low"), row.get(f"{key}_high")
        if value is None:
            return "–"
        if low is None or high is None or "−" not in key:
            return f"{value:.3f}" if "−" not in key else f"{value:+.3f}"
        return f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"

    parts = []
    for metric, title in (("ece", "ECE"), ("acc", "Accuracy")):
        head = "".join(f"<th>{title} {escape(lab)}</th>" for lab in labels)
        head += "".join(f"<th>{escape(n)}</th>" for n in names)
        body = "".join("<tr><td>" + escape(str(r["task"])) + "</td><td>" + str(r["n"]) + "</td>"
                       + "".join(f"<td>{cell(r, f'{metric}_{lab}')}</td>" for lab in labels)
                       + "".join(f"<td>{cell(r, f'{metric}_{n}')}</td>" for n in names) + "</tr>"
                       for r in data.four_arms)
        parts.append(f'<table id="four-arms-{metric}"><tr><th>task</th><th>n</th>{head}</tr>{body}</table>')
    legend = "; ".join(f"{escape(lab)} {escape(ARM_DESCRIPTIONS[arm])}" for arm, lab in PAPER_ARMS.items())
    return (f"<p>{legend}. Every arm's confidence is its self-consistency vote share. Differences are a − b of the "
            "raw metric as in the paper's Fig. 4 (a negative ECE difference: a is better calibrated), with paired "
            "bootstrap 95% CIs; the average row is the plain mean over tasks.</p>" + "".join(parts)
            + token_prob_html(data))


def token_prob_html(data: ReportData) -> str:
    """The label-only arms with the answer tokens' probability as the confidence, beside the vote share."""
    from raftlab.analysis.four_arms import LABEL_ONLY_ARMS, PAPER_ARMS

    labels = [PAPER_ARMS[a] for a in LABEL_ONLY_ARMS]
    rows = [r for r in data.four_arms if r["task"] != "average" and any(f"ece_{lab}_prob" in r for lab in labels)]
    if not rows:
        return ""
    fmt = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    body = "".join(f"<tr><td>{escape(str(r['task']))}</td><td>{escape(lab)}</td><td>{fmt(r.get(f'acc_{lab}'))}</td>"
                   f"<td>{fmt(r.get(f'acc_{lab}_prob'))}</td><td>{fmt(r.get(f'ece_{lab}'))}</td>"
                   f"<td>{fmt(r.get(f'ece_{lab}_prob'))}</td></tr>"
                   for r in rows for lab in labels if f"ece_{lab}_prob" in r)
    return ("<p>The label-only arms scored once more by the answer tokens' probabilities (one forward pass per "
            "question instead of k samples; confidence = softmax over the options):</p>"
            '<table id="token-prob"><tr><th>task</th><th>arm</th><th>Acc votes</th><th>Acc token-prob</th>'
            f"<th>ECE votes</th><th>ECE token-prob</th></tr>{body}</table>")


def summary_table_html(data: ReportData) -> str:
    return delta_table_html(data.tasks, data.arms, "summary")


def delta_table_html(tasks: list[TaskSummary], arms: list[str], table_id: str) -> str:
    """Accuracy/ECE per arm and the deltas with CIs, one row per task."""
    head = ["task", "n"]
    for arm in arms:
        head += [f"Acc {arm.upper()}", f"ECE {arm.upper()}"]
    head += ["ΔAcc [95% CI]", "ΔECE [95% CI]", "majority / chance", "verdict"]
    extra = sorted({arm for t in tasks for arm in t.arm_deltas})
    for arm in extra:
        head += [f"ΔAcc {arm.upper()} vs {arms[0].upper() if arms else 'FT'}",
                 f"ΔECE {arm.upper()} vs {arms[0].upper() if arms else 'FT'}"]
    out = [f'<table id="{escape(table_id)}"><thead><tr>' + "".join(f"<th>{escape(h)}</th>" for h in head)
           + "</tr></thead><tbody>"]
    for t in tasks:
        cells = [escape(t.task), str(t.n)]
        for arm in arms:
            m = t.metrics.get(arm, {})
            cells += [_num(m.get("accuracy")), _num(m.get("ece"))]
        cells += [_ci(t.delta_acc) + caveats_html(t), _ci(t.delta_ece),
                  f"{_num(t.baselines.get('majority_class'))} / {_num(t.baselines.get('chance'))}",
                  '<span class="ok">ok</span>' if t.trustworthy else '<span class="bad">not trustworthy</span>']
        for arm in extra:
            d = t.arm_deltas.get(arm, {})
            cells += [_ci(d.get("delta_acc")), _ci(d.get("delta_ece"))]
        out.append(f'<tr data-task="{escape(t.task)}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def caveats_html(t: TaskSummary) -> str:
    """The task's caveats on its ΔAcc (analysis.caveats), under the number."""
    return "".join(f'<div class="caveat">{escape(c)}</div>' for c in t.caveats)


STOP_REASONS = {"early_stopping": "early stopping (dev loss)", "max_steps": "max_steps reached",
                "epochs": "epochs reached"}


def training_html(data: ReportData) -> str:
    """Per task and trained arm: why training stopped, its steps, the best dev-loss step (whose weights were
    kept), whether it was still improving, and whether the arm learned beyond majority class / chance."""
    rows = []
    yes_no = {True: "yes", False: "no", None: "–"}
    for t in data.tasks:
        for arm in [a for a in data.arms if a in t.training] + [a for a in t.training if a not in data.arms]:
            info = t.training[arm]
            steps = _num(info.get("steps")) + (f" of {info['max_steps']}" if info.get("max_steps") else "")
            cells = [escape(t.task), escape(arm), escape(STOP_REASONS.get(info.get("stop_reason"), "–")), steps,
                     _num(info.get("best_step")), yes_no[info.get("still_improving")],
                     _num(info.get("train_examples")), yes_no[t.learned.get(arm)]]
            rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    if not rows:
        return ""
    head = ["task", "arm", "stopped by", "steps", "best step (dev loss)", "still improving", "training examples",
            "learned (above majority / chance)"]
    return ('<table id="training"><thead><tr>' + "".join(f"<th>{escape(h)}</th>" for h in head)
            + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table><p>With a dev set (train.dev_size) the "
            "final model is the best dev-loss step's; still improving: the last evaluation's dev loss was the "
            "lowest yet when the maximum was reached.</p>")


def checks_html(data: ReportData) -> str:
    """The failed artifact checks, task by task (empty when every task passed)."""
    flagged = [t for t in data.tasks if not t.trustworthy]
    if not flagged:
        return ('<p id="checks" class="ok">Artifact checks passed on every task (truncation, invalid answers, '
                "answers outside the options, constant votes, prompt mismatch, train/test overlap, a finetuned arm "
                "that learned beyond majority class / chance).</p>")
    items = "".join(f'<li data-task="{escape(t.task)}"><b>{escape(t.task)}: not trustworthy</b> — '
                    + "; ".join(escape(r) for r in t.reasons) + "</li>" for t in flagged)
    kept = data.fit is not None and data.fit.task_set == "all"
    where = ("They are kept in the main across-task fits, as asked; the fits without them are shown beside."
             if kept else "They are left out of the main across-task fits; the fits over all tasks, as the paper "
             "fits them, are shown beside.")
    return ('<div id="checks" class="bad"><h2>Is this result trustworthy? No, for '
            f'{len(flagged)} task(s)</h2><ul>{items}</ul><p>{where} '
            "See docs/study.md, “Is this result trustworthy?”.</p></div>")


def invalid_policy_html(data: ReportData) -> str:
    """Accuracy/ECE under each invalid-answer policy, for the arms where the policies disagree."""
    rows = []
    for t in data.tasks:
        for arm, by_policy in t.invalid_policies.items():
            values = {(m.get("accuracy"), m.get("ece"), m.get("n")) for m in by_policy.values()}
            if len(values) > 1:
                cells = [escape(t.task), escape(arm.upper())] + [
                    f"{_num(by_policy[p].get('accuracy'))} / {_num(by_policy[p].get('ece'))} (n={by_policy[p].get('n')})"
                    if p in by_policy else "–" for p in ("vote", "exclude", "abstain")]
                rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    if not rows:
        return ""
    head = ["task", "arm", "vote (default)", "exclude invalid votes", "abstain on invalid majority"]
    return ('<table id="invalid-policies"><thead><tr>' + "".join(f"<th>{escape(h)}</th>" for h in head)
            + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def learning_curves_html(data: ReportData) -> str:
    """RAFT vs FT per training-set size, one row per task and size (the learning-curve figures' numbers)."""
    rows = "".join(
        f'<tr data-task="{escape(task)}"><td>{escape(task)}</td>'
        f"<td>{p.size}{' (full)' if p.full else ''}</td><td>{_num(p.n_train)}</td>"
        f"<td>{_num(p.delta.acc_ft)}</td><td>{_num(p.delta.acc_raft)}</td><td>{_ci(p.delta.delta_acc)}</td>"
        f"<td>{_ci(p.delta.delta_ece)}</td></tr>" for task, points in data.learning_curves.items() for p in points)
    if not rows:
        return ""
    head = ["task", "train size", "examples trained on", "Acc FT", "Acc RAFT", "ΔAcc [95% CI]", "ΔECE [95% CI]"]
    return ('<table id="learning-curves"><thead><tr>' + "".join(f"<th>{escape(h)}</th>" for h in head)
            + f"</tr></thead><tbody>{rows}</tbody></table>")


def difficulty_table_html(data: ReportData) -> str:
    metrics = sorted({k for t in data.tasks for k in t.difficulty})
    if not metrics:
        return ""
    head = ["task", *metrics]
    rows = "".join(
        "<tr>" + f"<td>{escape(t.task)}</td>" + "".join(f"<td>{_num(t.difficulty.get(m))}</td>" for m in metrics)
        + "</tr>" for t in data.tasks)
    fits = "".join(
        f"<li>{escape(f.y)} = {f.slope:.4g}·{escape(f.x)} {f.intercept:+.4g} ({_p_text(f)}; "
        f"{escape(f.tasks_text())})</li>" for f in data.difficulty_fits + data.other_difficulty_fits)
    return ('<table id="difficulty"><thead><tr>' + "".join(f"<th>{escape(h)}</th>" for h in head)
            + f"</tr></thead><tbody>{rows}</tbody></table>" + (f"<ul>{fits}</ul>" if fits else ""))


def samples_html(data: ReportData) -> str:
    parts = []
    for task, samples in data.samples.items():
        parts.append(f'<h3>{escape(task)}</h3><div class="samples" data-task="{escape(task)}">')
        for s in samples:
            verdict = "" if s.correct is None else (
                '<span class="ok">correct</span>' if s.correct else '<span class="bad">wrong</span>')
            conf = "" if s.confidence is None else f", confidence {s.confidence:.2f}"
            parts.append(
                f"<p class=\"meta\">{escape(s.arm.upper())} · {escape(s.id)} · gold {escape(s.gold)} · "
                f"prediction {escape(s.prediction)}{conf} {verdict}</p>"
                f'<pre class="sample">{escape(s.text)}</pre>')
        parts.append("</div>")
    return "".join(parts)


def render_page(data: ReportData, figures: list[tuple[str, bytes, str]], sections: dict[str, list[str]],
                latex: str) -> str:
    """Assemble the page. ``figures``: (id, png, caption); ``sections``: section title -> figure ids."""
    by_id = {fid: figure_html(fid, png, cap) for fid, png, cap in figures}
    body = [f"<h1>{escape(data.title)}</h1>",
            f'<p class="meta">Generated {escape(_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))}'
            + "".join(f" · {escape(str(k))}: {escape(str(v))}" for k, v in data.meta.items()
                      if isinstance(v, (str, int, float))) + "</p>"]
    if data.headline:
        body.append('<h2>The answer</h2><ul id="answer">' + "".join(f"<li>{escape(line)}</li>" for line in
                                                                     data.headline) + "</ul>")
    body.append(checks_html(data))
    body += [fit_html(f, fid) for f, fid in ((data.fit, "fit"), (data.other_fit, "other-fit")) if f is not None]
    body.append(_INTRO)
    if data.notes:
        body.append('<ul id="notes">' + "".join(f"<li>{escape(n)}</li>" for n in data.notes) + "</ul>")
    body.append("<h2>Per-task results</h2>" + summary_table_html(data))
    training = training_html(data)
    if training:
        body.append("<h2>Training: when each arm stopped</h2>" + training)
    cost = cost_html(data)
    if cost:
        body.append("<h2>Cost</h2>" + cost)
    four = four_arm_html(data)
    if four:
        body.append("<h2>Untrained vs finetuned, without and with rationales (the paper's four arms)</h2>" + four)
    policies = invalid_policy_html(data)
    if policies:
        body.append("<h2>Invalid answers: accuracy / ECE under each scoring policy</h2><p>Where the policies "
                    "disagree: <i>vote</i> counts an unparseable output as an answer of its own (a unanimous "
                    "invalid vote is a confident wrong answer); <i>exclude</i> takes the majority of the valid "
                    "votes; <i>abstain</i> leaves questions with an invalid majority out.</p>" + policies)
    for title, ids in sections.items():
        if ids and title != RATIONALES:
            body.append(f"<h2>{escape(title)}</h2><div class=\"grid\">" + "".join(by_id[i] for i in ids) + "</div>"
                        + (learning_curves_html(data) if title == "Learning curves" else ""))
    diff = difficulty_table_html(data)
    if diff:
        body.append("<h2>Difficulty metrics</h2>" + diff)
    body.append(rationales_html(data, "".join(by_id[i] for i in sections.get(RATIONALES, []))))
    if data.samples:
        body.append("<h2>Sample model outputs</h2>" + samples_html(data))
    body.append(f'<h2>LaTeX table</h2><pre class="sample" id="latex">{escape(latex)}</pre>')
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'\">"
            f"<title>{escape(data.title)}</title><style>{_CSS}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")
