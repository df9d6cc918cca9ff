"""Stages in child processes (raftlab.study.isolation): results, errors, logs, settings, memory, interrupts."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import psutil
import pytest

from raftlab.machine import first_time
from raftlab.study.cache import StageFailed, StageRunner
from raftlab.study.isolation import run_stage_in_child

log = logging.getLogger("raftlab.test_isolation")


def _report(folder: Path) -> dict:
    log.info("hello from the stage")
    (folder / "out.txt").write_text("written in the child")
    return {"pid": os.getpid(), "cwd": os.getcwd(), "env": os.environ.get("RAFTLAB_TEST_ISOLATION"),
            "out": "out.txt"}


def test_a_stage_runs_in_another_process_with_this_ones_settings(tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("RAFTLAB_TEST_ISOLATION", "set after the fork server started")
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.INFO, logger="raftlab")
    outputs, seconds, peak, _ = run_stage_in_child("s", _report, tmp_path)
    assert outputs["pid"] != os.getpid()
    assert outputs["cwd"] == str(tmp_path)
    assert outputs["env"] == "set after the fork server started"
    assert (tmp_path / "out.txt").read_text() == "written in the child"
    assert seconds > 0 and peak > 0
    assert "hello from the stage" in caplog.text  # the child's log record went through this process's handlers


def _fail(folder: Path) -> dict:
    raise ValueError("bad field 'x' in line 3")


def test_an_error_in_the_stage_keeps_its_type_and_message(tmp_path) -> None:
    with pytest.raises(StageFailed, match=r"stage 's' failed \(ValueError: bad field 'x' in line 3\)") as info:
        run_stage_in_child("s", _fail, tmp_path)
    assert isinstance(info.value.__cause__, ValueError)


def _die(folder: Path) -> dict:
    os.kill(os.getpid(), signal.SIGKILL)
    return {}


def test_a_killed_stage_is_a_clear_failure(tmp_path) -> None:
    with pytest.raises(StageFailed, match=r"killed by signal 9 \(e.g. out of memory\).*Rerun the same command"):
        run_stage_in_child("s", _die, tmp_path)


def _interrupted(folder: Path) -> dict:
    (folder / "partial").write_text("saved before stopping")
    raise KeyboardInterrupt


def test_ctrl_c_in_the_stage_stops_the_study(tmp_path) -> None:
    with pytest.raises(KeyboardInterrupt):
        run_stage_in_child("s", _interrupted, tmp_path)
    assert (tmp_path / "partial").exists()


def _big(folder: Path) -> dict:
    import numpy as np

    block = np.ones(400 * 2**20 // 8)  # 400 MB, touched
    return {"sum": float(block.sum())}


def test_a_stages_memory_is_its_own(tmp_path) -> None:
    before = psutil.Process().memory_info().rss
    runner = StageRunner(tmp_path)
    runner.run("big", {}, _big, execute=run_stage_in_child)
    record = runner.stages["big"]
    assert record["peak_rss_mb"] >= 400 and record["worker"] == "child process"
    assert psutil.Process().memory_info().rss - before < 100 * 2**20  # none of it stayed in this process


def _announce(folder: Path) -> dict:
    return {"first": first_time("isolation test key")}


def test_what_a_stage_announced_once_is_not_announced_again(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("RAFTLAB_ANNOUNCED", raising=False)
    assert run_stage_in_child("a", _announce, tmp_path)[0] == {"first": True}
    assert run_stage_in_child("b", _announce, tmp_path)[0] == {"first": False}
    assert not first_time("isolation test key")
