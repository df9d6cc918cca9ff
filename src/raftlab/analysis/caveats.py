"""Caveats on a task's ΔAcc, in plain words, from how its finetuned arms trained and whether they learned.

Two situations make a ΔAcc say less than it seems to: an arm that reached its maximum number of steps while its
dev loss was still falling (it was compared before it converged), and one finetuned arm that learned while the
other stayed at chance/majority accuracy (the ΔAcc then measures what a small training set teaches one objective
in a fixed budget, not the effect of rationales in general).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: stop reasons that mean "the maximum was reached" (raftlab.training.early_stopping.stopping)
AT_MAXIMUM = ("max_steps", "epochs")


def still_improving(arm: str, training: Mapping[str, Any]) -> str | None:
    """``RAFT was still improving when it stopped at its maximum of 48 steps``, or None."""
    if training.get("still_improving") and training.get("stop_reason") in AT_MAXIMUM:
        return f"{arm.upper()} was still improving when it stopped at its maximum of {training.get('steps')} steps"
    return None


def did_not_learn(arm: str, training: Mapping[str, Any]) -> str:
    """``FT did not learn in 16 steps: this ΔAcc measures what 64 examples teach, not rationales in general``."""
    steps, n = training.get("steps"), training.get("train_examples")
    when = f" in {steps} steps" if steps is not None else ""
    what = f"{n} examples teach" if n else "this training set teaches"
    return f"{arm.upper()} did not learn{when}: this ΔAcc measures what {what}, not rationales in general"


def task_caveats(training: Mapping[str, Mapping[str, Any]], learned: Mapping[str, bool],
                 arms: Sequence[str]) -> list[str]:
    """The caveats on the ΔAcc of ``arms`` (baseline, treatment): each arm still improving at its maximum, and
    the arm that did not learn when the other did (``learned``: accuracy above chance/majority beyond its CI)."""
    out = [text for arm in arms if (text := still_improving(arm, training.get(arm) or {}))]
    known = [arm for arm in arms if arm in learned]
    if len(known) == 2 and learned[known[0]] != learned[known[1]]:
        arm = known[0] if not learned[known[0]] else known[1]
        out.append(did_not_learn(arm, training.get(arm) or {}))
    return out
