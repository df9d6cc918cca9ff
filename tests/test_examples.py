"""The worked cluster examples in docs/examples/ (docs/scale.md): the study configs validate, their SLURM
parameters are names submitit accepts, the multi-node accelerate config parses and fits the paper's batch."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from raftlab.study import load_config

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"


def _submitit_names() -> set[str]:
    submitit = pytest.importorskip("submitit")
    from submitit.slurm import slurm

    return set(submitit.AutoExecutor._valid_parameters()) | {f"slurm_{n}" for n in slurm._get_default_parameters()}


@pytest.mark.parametrize("name", ["paper_slurm.yaml", "paper_slurm_2nodes.yaml"])
def test_slurm_study_configs_validate(name: str) -> None:
    cfg = load_config(EXAMPLES / name)
    assert cfg.executor.kind == "slurm" and cfg.executor.workers > 1
    assert len(cfg.tasks) == 20 and cfg.train.profile == "paper" and cfg.eval.k == 10  # the paper preset (18 + 2 validation tasks)
    unknown = set(cfg.executor.slurm) - _submitit_names()
    assert not unknown, f"submitit.AutoExecutor would refuse {unknown}"


def test_two_node_launcher_and_accelerate_config() -> None:
    import yaml

    from raftlab.training.config import TrainConfig
    from raftlab.training.trainer import check_accelerate_config

    cfg = load_config(EXAMPLES / "paper_slurm_2nodes.yaml")
    script = cfg.train.launcher.split()[-1]
    assert cfg.train.launcher.startswith("sbatch --wait") and (EXAMPLES.parents[1] / script).is_file()
    raw = yaml.safe_load((EXAMPLES / "fsdp_2nodes.yaml").read_text())
    assert raw["num_machines"] == 2 and raw["num_processes"] == 16 and raw["distributed_type"] == "FSDP"
    assert {"machine_rank", "main_process_ip", "main_process_port", "rdzv_backend", "same_network"} <= set(raw)
    train = TrainConfig(**cfg.train.model_dump(exclude={"launcher"}), model="tiny", data="d.jsonl", out="o")
    fit = check_accelerate_config(EXAMPLES / "fsdp_2nodes.yaml", train)
    assert fit == {"world_size": 16, "grad_accum": 1, "global_batch": 64}


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
@pytest.mark.parametrize("name", ["paper_study.sbatch", "train_2nodes.sbatch"])
def test_sbatch_scripts_parse(name: str) -> None:
    assert subprocess.run(["bash", "-n", str(EXAMPLES / name)]).returncode == 0
    text = (EXAMPLES / name).read_text()
    assert text.startswith("#!/bin/bash") and "#SBATCH --nodes=" in text
    for ref in ("docs/examples/paper_slurm.yaml", "docs/examples/fsdp_2nodes.yaml"):
        if ref in text:
            assert (EXAMPLES.parents[1] / ref).is_file()
