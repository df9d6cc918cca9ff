"""Learning curves: ΔAcc and ΔECE of RAFT over FT at each training-set size (a study's ``train_sizes``), each
with the same bootstrap CIs as the full-size deltas (:func:`raftlab.analysis.deltas.task_deltas`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from raftlab import layout
from raftlab.analysis.models import SizePoint, TaskDelta

#: ``(baseline records, treatment records) -> TaskDelta`` (records: a path or EvalRecords).
Deltas = Callable[[Any, Any], TaskDelta]


@dataclass(frozen=True)
class SizedArms:
    """One task's arms trained on one size's subset: ``arms`` (arm -> eval records or folder), ``n`` the examples
    they trained on and ``pool`` the examples the full-size arms trained on (None when not recorded)."""

    arms: Mapping[str, Any] = field(default_factory=dict)
    n: int | None = None
    pool: int | None = None


#: ``task -> size -> SizedArms``
SizeRuns = Mapping[str, Mapping[int, SizedArms]]


def discover_sizes(run_dir: str | Path, stages: frozenset[str] | None = None) -> dict[str, dict[int, SizedArms]]:
    """The sized arms of a run directory (:func:`raftlab.layout.size_dirs`) with their subsets' counts
    (``subset.json``); only the eval stages in ``stages`` when given."""
    from raftlab.corrupt import read_json

    found: dict[str, dict[int, SizedArms]] = {}
    for task, by_size in layout.size_dirs(run_dir).items():
        for size, arms in by_size.items():
            arms = {a: f for a, f in arms.items()
                    if stages is None or layout.sized(size, layout.evaluation(a, task)) in stages}
            if not arms:
                continue
            info_file = Path(run_dir) / layout.subset(size, task) / layout.SUBSET_FILE
            info = (read_json(info_file, f"delete {info_file.parent} and rerun the study to draw it again")
                    if info_file.is_file() else {})
            found.setdefault(task, {})[size] = SizedArms(arms, info.get("n"), info.get("pool"))
    return found


def learning_curve(task: str, sized: Mapping[int, SizedArms], full: TaskDelta | None, deltas: Deltas,
                   baseline: str = "ft", treatment: str = "raft") -> tuple[list[SizePoint], list[str]]:
    """The task's points in ascending size, then the full-size arms' ``full`` delta (when the subsets recorded
    the pool it trained on); and notes on sizes missing an arm."""
    points, notes = [], []
    for size in sorted(sized):
        arms = sized[size].arms
        if baseline not in arms or treatment not in arms:
            notes.append(f"task {task}, train size {size}: no {baseline!r} and {treatment!r} records to compare "
                         f"(arms: {sorted(arms)})")
            continue
        points.append(SizePoint(size=size, n_train=sized[size].n, delta=deltas(arms[baseline], arms[treatment])))
    pools = {s.pool for s in sized.values() if s.pool is not None}
    if points and full is not None and len(pools) == 1:
        pool = pools.pop()
        points.append(SizePoint(size=pool, n_train=pool, full=True, delta=full))
    return points, notes
