"""The ``train`` stage: finetune the student with an arm's objective, in this process or through the config's
launcher (``train.launcher``, e.g. ``accelerate launch``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from raftlab.study.config import ARM_OBJECTIVE, StudyConfig, TaskSpec
from raftlab.study.work.outputs import Given, RationaleFile, TrainOutput


def train(cfg: StudyConfig, spec: TaskSpec, arm: str, sources: Given | list[Given], out: Path) -> TrainOutput:
    """Finetune the student with the arm's objective on the examples that have a kept rationale
    (FT sees the same questions with the label only; ``blank`` swaps rationales for think tokens). ``sources``
    is the task's rationale stage (or a training-set size's subset), or a list of them (leave-one-task-out: the
    other tasks, multi-task)."""
    from raftlab.training import TrainConfig
    from raftlab.training import train as run_train
    from raftlab.training.trainer import drop_checkpoints

    data = [str(RationaleFile.of(o).rationales_path) for o in (sources if isinstance(sources, list) else [sources])]
    config = TrainConfig(**cfg.train.model_dump(exclude={"launcher"}), model=cfg.model,
                         data=data[0] if len(data) == 1 else data, objective=ARM_OBJECTIVE[arm],
                         out=str(out / "model"), task=spec.name if cfg.protocol == "per_task" else None,
                         seed=cfg.seed,
                         resume=True)  # continue from the newest checkpoint after an interrupt
    if cfg.train.launcher:
        check_launch(cfg.train.launcher, config)
        launch_training(cfg.train.launcher, config.to_file(out / "train_config.yaml"))
        model_dir = Path(config.out)
    else:
        model_dir = Path(run_train(config))
    drop_checkpoints(model_dir)  # the stage is done; a changed config clears it and retrains from scratch
    return TrainOutput(os.path.relpath(model_dir, out), folder=out)


def check_launch(launcher: str, config: Any) -> None:
    """Before launching: the launcher's accelerate config (``--config_file``) fits this training's batch
    arithmetic (world size, gradient accumulation, DeepSpeed's own setting); see ``check_accelerate_config``."""
    import shlex

    from raftlab.training.trainer import check_accelerate_config

    args = shlex.split(launcher)
    for i, arg in enumerate(args):
        path = args[i + 1] if arg == "--config_file" and i + 1 < len(args) else (
            arg.split("=", 1)[1] if arg.startswith("--config_file=") else None)
        if path:
            check_accelerate_config(path, config)


def launch_training(launcher: str, config_file: Path) -> None:
    """Run ``<launcher> -m raftlab.cli.main train --config FILE`` (e.g. ``accelerate launch --config_file
    fsdp.yaml``)."""
    import shlex
    import subprocess

    cmd = [*shlex.split(launcher), "-m", "raftlab.cli.main", "train", "--config", str(config_file)]
    proc = subprocess.run(cmd, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"training command failed with exit code {proc.returncode}: {shlex.join(cmd)}")
