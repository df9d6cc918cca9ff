"""The ``eval`` stage: self-consistency evaluation of a trained arm with a prompt (its own, or the other one:
:class:`~raftlab.study.config.ArmEval`)."""

from __future__ import annotations

from pathlib import Path

from raftlab.study.config import ARM_OBJECTIVE, ArmEval, StudyConfig, TaskSpec
from raftlab.study.work.common import arm_budget, jsonable, self_consistency
from raftlab.study.work.outputs import EvalOutput, Given, TrainOutput


def evaluate(cfg: StudyConfig, spec: TaskSpec, arm: ArmEval, train_out: Given, data_out: Given, out: Path,
             rat_out: Given) -> EvalOutput:
    """Self-consistency evaluation of the arm's model, with the prompt it was trained on and a generation budget
    that fits its training targets."""
    from raftlab.tasks import get_task
    from raftlab.training.features import PROMPT_MODES as TRAINED_MODES

    task = get_task(spec.name)
    mode = arm.prompt_mode
    objective = ARM_OBJECTIVE[arm.arm]
    if mode not in TRAINED_MODES[objective]:  # cross-prompt eval: budget of what that prompt's targets look like
        objective = "raft" if mode == "cot" else "label"
    budget = arm_budget(cfg, task, rat_out, objective, mode, out)
    metrics = self_consistency(cfg, f"{cfg.eval.backend}:{TrainOutput.of(train_out).model_path}", task,
                               data_out, mode, out, budget)
    return EvalOutput(jsonable(metrics), folder=out)
