"""User errors from the `raftlab` command: one clear line naming what is wrong, exit code 2, no traceback
(unless --debug). Run through the real entry point (`raftlab.cli.main.main`), in subprocesses."""

from __future__ import annotations

import subprocess
import sys

import pytest

BAD_UTF8 = b'{"id": "a", "task": "synth_arith", "question": "caf\xe9"}\n'


def _run(args: list[str], tmp_path, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-c", "from raftlab.cli.main import main; main()", *args],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["eval", "--model", "tiny", "--task", "nope", "--out", "o"], "unknown task 'nope'"),
    (["eval", "--model", "tiny", "--task", "synth_arith", "--mode", "bogus", "--limit", "1", "--out", "o"],
     "unknown mode 'bogus'"),
    (["eval", "--model", "tiny", "--task", "synth_arith", "--k", "0", "--limit", "1", "--out", "o"],
     "k must be at least 1"),
    (["eval", "--model", "no-such-model-xyz", "--task", "synth_arith", "--limit", "1", "--out", "o"],
     "unknown model 'no-such-model-xyz'"),
    (["rationales", "generate", "--task", "synth_arith", "--teacher", "bogus:x", "--n", "2", "--out", "r"],
     "unknown backend 'bogus'"),
    (["eval", "--model", "tiny", "--task", "synth_arith", "--data", "bad.jsonl", "--out", "o"],
     "bad.jsonl:1: not valid UTF-8"),

    (["train", "--model", "tiny", "--data", "bad.jsonl", "--out", "m"], "bad.jsonl:1: not valid UTF-8"),
    (["study", "missing.yaml"], "no such study config file"),
])
def test_user_errors_are_one_line_with_exit_code_2(args, message, tmp_path):
    (tmp_path / "bad.jsonl").write_bytes(BAD_UTF8)
    res = _run(args, tmp_path)
    out = " ".join((res.stdout + res.stderr).split())  # rich may wrap long lines
    assert res.returncode == 2, out
    assert message in out and "Traceback" not in out


@pytest.mark.slow
def test_data_validate_reports_a_bad_file_with_exit_code_1(tmp_path):
    (tmp_path / "bad.jsonl").write_bytes(BAD_UTF8)
    res = _run(["data", "validate", "bad.jsonl"], tmp_path)
    assert res.returncode == 1 and "bad.jsonl:1: not valid UTF-8" in res.stdout + res.stderr


@pytest.mark.slow
def test_debug_shows_the_traceback(tmp_path):
    res = _run(["--debug", "eval", "--model", "tiny", "--task", "nope", "--out", "o"], tmp_path)
    assert res.returncode != 0 and "Traceback" in res.stderr
    res = _run(["eval", "--model", "tiny", "--task", "nope", "--out", "o"], tmp_path, env={"RAFTLAB_DEBUG": "1"})
    assert "Traceback" in res.stderr


@pytest.mark.slow
def test_study_config_is_checked_before_the_run_directory_exists(tmp_path):
    (tmp_path / "s.yaml").write_text("include: quick\ntasks: [synth_arith, no_such_task]\n")
    res = _run(["study", "s.yaml", "--out", "run"], tmp_path)
    out = " ".join((res.stdout + res.stderr).split())
    assert res.returncode == 2 and "unknown task(s) 'no_such_task'" in out and "Traceback" not in out
    assert not (tmp_path / "run").exists()
    (tmp_path / "t.yaml").write_text("include: quick\nteacher: {backend: 'bogus:model'}\n")
    res = _run(["study", "t.yaml", "--out", "run"], tmp_path)
    assert res.returncode == 2 and "teacher.backend" in res.stdout + res.stderr and not (tmp_path / "run").exists()


@pytest.mark.slow
def test_oversized_jsonl_lines_are_refused_with_the_line(tmp_path):
    (tmp_path / "big.jsonl").write_text('{"id": "a", "question": "' + "x" * 5000 + '"}\n')
    res = _run(["train", "--model", "tiny", "--data", "big.jsonl", "--out", "m"], tmp_path,
               env={"RAFTLAB_MAX_LINE_BYTES": "1000"})
    out = res.stdout + res.stderr
    assert res.returncode == 2 and "big.jsonl:1: line longer than 1000 bytes" in out
