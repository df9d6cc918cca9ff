"""Multi-process training on a CPU host: two processes launched by torchrun join one gloo process group, train one
model with a global batch of 2x the per-device batch, only the main process writes, and a resume continues."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def _torchrun(args: list[str], cwd) -> subprocess.CompletedProcess:
    from raftlab.serve import free_port

    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(free_port()), "-m", "raftlab.cli.main", "train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)


def test_two_cpu_processes_train_one_model_and_resume(tmp_path):
    from raftlab.storage import write_jsonl
    from raftlab.tasks import get_task

    write_jsonl(get_task("synth_arith").load("train", limit=16, seed=0), tmp_path / "d.jsonl")
    common = ["--model", "tiny", "--data", "d.jsonl", "--out", "m", "--batch-size", "2", "--save-steps", "2"]
    res = _torchrun([*common, "--max-steps", "2"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((tmp_path / "m" / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_batch"] == 4 and summary["global_step"] == 2
    assert summary["epochs_trained"] == pytest.approx(0.5)  # 2 steps x 4 rows of 16: one process group, one run
    assert res.stdout.count("saved to m") == 1  # only the main process reports (and writes)
    assert "{'loss'" not in res.stdout + res.stderr  # no Trainer log dicts printed
    assert sorted(p.name for p in (tmp_path / "m" / "checkpoints").iterdir()) == ["checkpoint-2"]

    res = _torchrun([*common, "--max-steps", "4", "--resume"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((tmp_path / "m" / "train_summary.json").read_text())
    assert summary["global_step"] == 4 and summary["world_size"] == 2


def test_fsdp_and_deepspeed_launches_are_refused_on_a_cpu_host(tmp_path, monkeypatch):
    import torch

    from raftlab.training.trainer import check_launcher_fits_host

    if torch.cuda.is_available():
        pytest.skip("a CUDA host may use FSDP / DeepSpeed")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(ValueError, match="FSDP needs GPUs and this host has no CUDA device"):
        check_launcher_fits_host()
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(ValueError, match="DeepSpeed needs GPUs"):
        check_launcher_fits_host()
