"""Paired comparison of two decoding methods on the same questions (exact McNemar / sign test)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from raftlab.rationalyst.store import StageStore


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value: ``scipy.stats.binomtest`` (n = a_only + b_only, p = 1/2) on the
    discordant pairs."""
    from scipy.stats import binomtest

    if a_only < 0 or b_only < 0:
        raise ValueError(f"counts must be non-negative, got {a_only} and {b_only}")
    n = a_only + b_only
    return 1.0 if n == 0 else float(binomtest(a_only, n, 0.5).pvalue)


def paired_counts(a: Sequence[bool], b: Sequence[bool]) -> dict[str, Any]:
    """Both/only-a/only-b/neither counts of two paired correctness vectors, accuracies and the McNemar p."""
    if len(a) != len(b):
        raise ValueError(f"paired results differ in length: {len(a)} vs {len(b)}")
    a_only = sum(x and not y for x, y in zip(a, b))
    b_only = sum(y and not x for x, y in zip(a, b))
    both = sum(x and y for x, y in zip(a, b))
    n = len(a)
    return {"n": n, "both": both, "a_only": a_only, "b_only": b_only, "neither": n - both - a_only - b_only,
            "acc_a": (both + a_only) / max(1, n), "acc_b": (both + b_only) / max(1, n),
            "p_mcnemar": mcnemar_exact(a_only, b_only)}


def paired_comparison(store: StageStore, task_name: str, ids: Sequence[str], a: str = "implicit",
                      b: str = "random") -> dict[str, Any]:
    """:func:`paired_counts` of methods ``a`` and ``b`` over the ``ids`` that both have a solve result for."""
    results = dict(store.items("solve"))
    pairs = [(results[f"{task_name}|{a}|{i}"]["correct"], results[f"{task_name}|{b}|{i}"]["correct"])
             for i in ids if f"{task_name}|{a}|{i}" in results and f"{task_name}|{b}|{i}" in results]
    out = paired_counts([x for x, _ in pairs], [y for _, y in pairs])
    return {"a": a, "b": b, **out}
