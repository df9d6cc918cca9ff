"""scripts/gpu_check.sh: without CUDA it stops at once with a clear message; --dry-run runs its sampling path
at toy shapes on the CPU and writes the JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), *args], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)


def test_without_cuda_it_stops_with_a_clear_message(tmp_path: Path) -> None:
    res = _run(["--out", str(tmp_path / "g.json")], tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error: no CUDA device") and "--dry-run" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "g.json").exists()


def test_dry_run_writes_the_json(tmp_path: Path) -> None:
    out = tmp_path / "g.json"
    res = _run(["--dry-run", "--out", str(out), "--work", str(tmp_path)], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] is True and report["machine"]["cuda"] is False
    assert set(report["sections"]) == {"hf_sampling", "vllm", "finetune", "study_quick"}
    hf = report["sections"]["hf_sampling"]
    assert "error" not in hf, hf
    assert hf["k"] == 2 and hf["raftlab_hf"]["tokens"] > 0 and hf["hf_generate"]["tokens"] == 2 * 2 * 8
    assert all("skipped" in report["sections"][s] for s in ("vllm", "finetune", "study_quick"))


@pytest.mark.parametrize("flag", ["--help"])
def test_help(flag: str, tmp_path: Path) -> None:
    res = _run([flag], tmp_path)
    assert res.returncode == 0 and "--dry-run" in res.stdout
