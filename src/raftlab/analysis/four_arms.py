"""The paper's four arms (Fig. 4): the untrained student prompted in context without (①) and with (②) rationales,
label-only finetuning (③ FT) and rationale-augmented finetuning (④ RAFT), and the differences the paper reads:
④−③ (rationales in finetuning), ③−① (finetuning with labels), ④−② (finetuning with rationales), ②−① (rationales
in prompting).

Every arm's confidence is the same self-consistency vote share. Differences are ``a − b`` of the raw metric, as in
Fig. 4 (so a negative ECE difference means ``a`` is better calibrated), with paired percentile-bootstrap CIs
(both arms answer the same questions).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from raftlab import layout
from raftlab.analysis.models import Interval, TaskDelta

#: arm name -> the paper's label
PAPER_ARMS: dict[str, str] = {layout.ICL_LABEL: "①", layout.ICL_RATIONALE: "②", "ft": "③", "raft": "④"}
#: what each arm is, in words
ARM_DESCRIPTIONS: dict[str, str] = {
    layout.ICL_LABEL: "untrained, in-context demonstrations with labels only",
    layout.ICL_RATIONALE: "untrained, in-context demonstrations with rationales (CoT)",
    "ft": "finetuned on labels (FT)",
    "raft": "finetuned on rationales + labels (RAFT)",
}
#: The arms whose answer is a label alone, so their confidence can also be read from the answer tokens'
#: probabilities (``eval.direct_prob``; columns ``acc_<label>_prob``/``ece_<label>_prob``).
LABEL_ONLY_ARMS: tuple[str, ...] = (layout.ICL_LABEL, "ft")
#: (name, arm a, arm b): the difference a − b
CONTRASTS: tuple[tuple[str, str, str], ...] = (
    ("④−③", "raft", "ft"),
    ("③−①", "ft", layout.ICL_LABEL),
    ("④−②", "raft", layout.ICL_RATIONALE),
    ("②−①", layout.ICL_RATIONALE, layout.ICL_LABEL),
)


def contrast_intervals(delta: TaskDelta) -> dict[str, Interval]:
    """``{"accuracy": a − b, "ece": a − b}`` from a :class:`TaskDelta` computed as ``task_deltas(b, a)`` (whose
    ΔECE is −(ECE_a − ECE_b))."""
    e = delta.delta_ece
    neg = lambda v: None if v is None else 0.0 - v  # noqa: E731 - (0.0 - x, not -x: no negative zeros)
    ece = Interval(value=neg(e.value), low=neg(e.high), high=neg(e.low))
    return {"accuracy": delta.delta_acc, "ece": ece}


def four_arm_rows(tasks: Sequence[Any]) -> list[dict[str, Any]]:
    """One flat row per task that has at least two of the four arms, plus an ``average`` row over the tasks
    (plain means; no interval; validation tasks, kept apart from the across-task results, are left out of it).
    Columns: ``acc_<label>``/``ece_<label>`` per arm and ``acc_<contrast>``,
    ``ece_<contrast>`` (+ ``_low``/``_high``) per contrast. ``tasks``: analysis TaskRows (``metrics`` and
    ``contrasts``)."""
    rows, averaged = [], []
    for t in tasks:
        present = [arm for arm in PAPER_ARMS if arm in t.metrics]
        if len(present) < 2:
            continue
        row: dict[str, Any] = {"task": t.task, "n": t.n}
        for arm, label in PAPER_ARMS.items():
            m = t.metrics.get(arm) or {}
            row[f"acc_{label}"], row[f"ece_{label}"] = m.get("accuracy"), m.get("ece")
        for arm in LABEL_ONLY_ARMS:  # the token-probability confidence of the label-only arms, when scored
            m = (getattr(t, "token_prob", None) or {}).get(arm)
            if m:
                label = PAPER_ARMS[arm]
                row[f"acc_{label}_prob"], row[f"ece_{label}_prob"] = m.get("accuracy"), m.get("ece")
        for name, _, _ in CONTRASTS:
            delta = t.contrasts.get(name)
            for metric, iv in (contrast_intervals(delta) if delta else {}).items():
                key = f"{'acc' if metric == 'accuracy' else 'ece'}_{name}"
                row[key], row[f"{key}_low"], row[f"{key}_high"] = iv.value, iv.low, iv.high
        rows.append(row)
        if getattr(t, "role", "fit") == "fit":
            averaged.append(row)
    if averaged:
        keys = [k for k in averaged[0] if k not in ("task", "n") and not k.endswith(("_low", "_high"))]
        avg: dict[str, Any] = {"task": "average", "n": sum(r["n"] for r in averaged)}
        for k in keys:
            values = [r[k] for r in averaged if r.get(k) is not None]
            avg[k] = sum(values) / len(values) if values else None
        rows.append(avg)
    return rows


def compute_contrasts(loaded: Mapping[str, Any], deltas: Any, task: str) -> dict[str, TaskDelta]:
    """Each contrast whose two arms are both in ``loaded`` (arm -> records): ``deltas(b_records, a_records,
    task=task)`` (the analysis' :func:`task_deltas` with its bootstrap settings)."""
    return {name: deltas(loaded[b], loaded[a], task=task) for name, a, b in CONTRASTS if a in loaded and b in loaded}
