"""The ``mean_of_task`` stage (a difficulty metric): the untrained student's self-consistency accuracy when
each question is preceded by demonstrations of other tasks (mean-of-task prompting)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raftlab.schema import Example
from raftlab.study.config import StudyConfig, TaskSpec
from raftlab.study.work.common import PromptedTask, arm_budget, jsonable, kept_examples, self_consistency
from raftlab.study.work.outputs import Given, MeanOfTaskOutput


def mean_of_task_prompting(task: Any, examples_by_task: dict[str, list[Example]], seed: int) -> PromptedTask:
    """The task with its evaluation prompt preceded by 3 demonstrations of other tasks (seeded)."""
    from raftlab.analysis import mean_of_task_prompt

    return PromptedTask(task, lambda example, mode: mean_of_task_prompt(
        task.name, examples_by_task, k=3, seed=seed, example=example, mode=mode))


def mean_of_task(cfg: StudyConfig, spec: TaskSpec, rat_outs: dict[str, Given], data_out: Given,
                 out: Path) -> MeanOfTaskOutput:
    """Self-consistency accuracy of the untrained student with mean-of-task prompting (a difficulty metric)."""
    from raftlab.tasks import get_task

    by_task = {name: kept_examples(o) for name, o in rat_outs.items()}
    task = mean_of_task_prompting(get_task(spec.name), by_task, cfg.seed)
    budget = arm_budget(cfg, task, rat_outs[spec.name], "raft", "cot", out)
    metrics = self_consistency(cfg, f"{cfg.eval.backend}:{cfg.model}", task, data_out, "cot", out, budget)
    return MeanOfTaskOutput(float(metrics["accuracy"]), jsonable(metrics), folder=out)
