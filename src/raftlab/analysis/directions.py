"""The hypothesised sign of each across-task relation: the direction a one-tailed p-value tests.

The paper (Zhu et al., 2025) hypothesises that harder tasks gain more from RAFT and that the accuracy and
calibration gains move together. ΔECE rises with ΔAcc (Eq. 7, Tables 5 and 9). ΔAcc and ΔECE rise with the
rationale lengths (difficulty metrics 1 and 2). They fall with the FT accuracy (metric 3: "lower accuracy
corresponds to higher task difficulty"). For metric 3, Fig. 5 (e, f) reverses the x-axis and Table 10 prints the
correlation with that reversed axis. Tables 5, 9 and 10 print one-tailed p-values in these directions.
"""

from __future__ import annotations

from typing import Literal

Direction = Literal["positive", "negative"]

#: x of a fit (against ΔAcc or ΔECE) -> the sign of the relation the paper hypothesises
DIRECTIONS: dict[str, Direction] = {
    "delta_acc": "positive",  # Eq. 7: ΔECE = α·ΔAcc + β, α > 0
    "reference_length": "positive",  # metric 1: longer reference rationales = harder task
    "length": "positive",  # metric 2 (Eq. 8): longer base-model rationales = harder task
    "acc_ft": "negative",  # metric 3: lower FT accuracy = harder task
    "teacher_rationale_length": "positive",  # raftlab variant of a length metric
    "mean_of_task_accuracy": "negative",  # raftlab variant of an accuracy metric
}


def hypothesised_direction(x: str) -> Direction:
    """The hypothesised sign of the relation of ΔAcc/ΔECE with ``x``. Names not in :data:`DIRECTIONS` follow
    the same rule: accuracy-type names (``acc_<arm>``, ``...accuracy...``) are negative (a lower accuracy is a
    harder task), any other name is positive (a larger value is a harder task)."""
    if x in DIRECTIONS:
        return DIRECTIONS[x]
    return "negative" if x.startswith("acc_") or "accuracy" in x else "positive"


def h1(direction: str) -> str:
    """The alternative hypothesis a one-tailed p-value in ``direction`` tests, as text."""
    return "H1: r > 0" if direction == "positive" else "H1: r < 0"
