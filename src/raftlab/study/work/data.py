"""The ``data`` stage: the task's seeded train and test subsets."""

from __future__ import annotations

from pathlib import Path

from raftlab.study.config import StudyConfig, TaskSpec
from raftlab.study.work.common import write_examples
from raftlab.study.work.outputs import DataOutput


def prepare_data(cfg: StudyConfig, spec: TaskSpec, out: Path) -> DataOutput:
    """Seeded train/test subsets of the task."""
    from raftlab.tasks import get_task

    task = get_task(spec.name)
    train = task.load("train", data_dir=spec.data_dir, limit=spec.train_limit, seed=cfg.seed)
    test = task.load("test", data_dir=spec.data_dir, limit=spec.test_limit, seed=cfg.seed)
    write_examples(train, out / "train.jsonl")
    write_examples(test, out / "test.jsonl")
    return DataOutput("train.jsonl", "test.jsonl", n_train=len(train), n_test=len(test), folder=out)
