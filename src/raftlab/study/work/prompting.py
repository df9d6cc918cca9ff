"""The ``prompting`` stage: the untrained arms ① (label-only demonstrations) and ② (rationale demonstrations),
the student before finetuning prompted in context."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from raftlab.schema import Example
from raftlab.study.config import StudyConfig, TaskSpec
from raftlab.study.work.common import PromptedTask, arm_budget, jsonable, kept_examples, self_consistency
from raftlab.study.work.outputs import Given, PromptingOutput


def in_context(task: Any, demonstrations: list[Example]) -> PromptedTask:
    """The task with its evaluation prompt preceded by ``demonstrations``."""
    return PromptedTask(task, lambda example, mode: task.few_shot_prompt(demonstrations, example, mode))


def prompt_eval(cfg: StudyConfig, spec: TaskSpec, mode: str, data_out: Given, out: Path,
                rat_out: Given) -> PromptingOutput:
    """The untrained arms ① (``mode="direct"``: label-only demonstrations) and ② (``"cot"``: rationale
    demonstrations): self-consistency eval of the model before finetuning, prompted in context with
    ``prompting.shots`` training examples that have a kept teacher rationale (the same ones in both arms)."""
    from raftlab.tasks import get_task

    task = get_task(spec.name)  # budget: the teacher's kept rationales (cot) or labels (direct), student tokenizer
    budget = arm_budget(cfg, task, rat_out, "raft" if mode == "cot" else "label", mode, out)
    pool = kept_examples(rat_out)
    demos = random.Random(f"{cfg.seed}:{spec.name}:icl").sample(pool, min(cfg.prompting.shots, len(pool)))
    student = f"{cfg.eval.backend}:{cfg.model}"
    backend = cfg.prompting.backend or student
    options = cfg.prompting.backend_options if cfg.prompting.backend else None  # None: the eval's options
    metrics = self_consistency(cfg, backend, in_context(task, demos), data_out, mode, out, budget, options)
    return PromptingOutput(jsonable(metrics), shots=len(demos), demonstrations=[d.id for d in demos], folder=out)
