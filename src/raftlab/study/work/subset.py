"""The ``subset`` stage: the learning curve's training sets (a study's ``train_sizes``). Per task and size, a
seeded subset of the examples the full-size arms train on, shared by the sized FT and RAFT arms.

The subsets of one task are nested: each size takes the first ``n`` of one seeded permutation of the training pool,
so a larger size adds examples to a smaller one's instead of drawing anew (the curve shows the size, not the
draw). A size at or above the pool (the teacher kept fewer rationales than ``train_limit``) takes the whole pool:
that point is trained on the full arm's examples, which ``subset.json`` records (``n`` below the size).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Sequence, TypeVar

from raftlab import layout
from raftlab.storage import write_json
from raftlab.study.config import StudyConfig, TaskSpec
from raftlab.study.work.common import kept_examples, write_examples
from raftlab.study.work.outputs import Given, SubsetOutput

log = logging.getLogger(__name__)
T = TypeVar("T")


def nested_subset(items: Sequence[T], size: int, key: str) -> list[T]:
    """The first ``size`` items of the permutation seeded by ``key``, in their original order (so the subset of a
    smaller size lies inside that of a larger one)."""
    order = list(range(len(items)))
    random.Random(key).shuffle(order)
    chosen = set(order[:size])
    return [item for i, item in enumerate(items) if i in chosen]


def train_subset(cfg: StudyConfig, spec: TaskSpec, size: int, rat_outs: list[Given], out: Path) -> SubsetOutput:
    """``size`` of the examples with a kept rationale in ``rat_outs`` (the task's rationale stage, or leaving one
    task out the other tasks'), drawn with the study's seed; written as the sized arms' training file."""
    pool = [e for o in rat_outs for e in kept_examples(o)]
    if size >= len(pool):
        log.warning("train size %d of task %s: the teacher kept only %d rationales, so this size trains on all of "
                    "them (the full arm's examples)", size, spec.name, len(pool))
    chosen = nested_subset(pool, size, f"{cfg.seed}:{spec.name}:train_sizes")
    write_examples(chosen, out / layout.RATIONALES_FILE)
    write_json(out / layout.SUBSET_FILE, {"task": spec.name, "size": size, "n": len(chosen), "pool": len(pool),
                                          "ids": [e.id for e in chosen]})
    return SubsetOutput(layout.RATIONALES_FILE, size=size, n=len(chosen), pool=len(pool), folder=out)
