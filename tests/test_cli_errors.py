"""User errors from the `raftlab` command: one clear line naming what is wrong, exit code 2, no traceback
(unless --debug). The matrix runs through typer's runner in one child interpreter; a few cases run the real
entry point (`raftlab.cli.main.main`) in subprocesses of their own."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

BAD_UTF8 = b'{"id": "a", "task": "synth_arith", "question": "caf\xe9"}\n'


def _run(args: list[str], tmp_path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-c", "from raftlab.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=timeout,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )


#: (command path / class of bad input) -> (arguments, exit code, text the message must contain). Files are made by
#: `_bad_files`; RAFTLAB_MAX_LINE_BYTES is 1000 for every case, so big.jsonl's line is oversized.
CASES = {
    # class: unknown names
    "study/unknown-task": (["study", "unk_task.yaml", "--out", "run"], 2, "unknown task(s) 'nope'"),
    "study/bad-teacher": (["study", "bad_teacher.yaml", "--out", "run"], 2, "teacher.backend"),
    "study/missing-file": (["study", "missing.yaml"], 2, "no such study config file"),
    "doctor/missing-file": (["doctor", "missing.yaml"], 2, "no such study config file"),
    "doctor/unknown-key": (["doctor", "unknown_key.yaml"], 2, "bogus_key"),
    "study/bad-yaml": (["study", "bad.yaml", "--out", "run"], 2, "bad.yaml"),
    "study/unknown-key": (["study", "unknown_key.yaml", "--out", "run"], 2, "bogus_key"),
    "study/impossible-k": (["study", "zero_k.yaml", "--out", "run"], 2, "eval.k"),
    "study/unknown-model": (["study", "unk_model.yaml", "--out", "run"], 2, "no-such-model"),
    "train/unknown-model": (
        ["train", "--model", "no-such-model", "--data", "good.jsonl", "--out", "m"],
        2,
        "unknown model 'no-such-model'",
    ),
    "train/unknown-objective": (
        ["train", "--model", "tiny", "--data", "good.jsonl", "--objective", "bogus", "--out", "m"],
        2,
        "objective",
    ),
    "train/unknown-task": (
        ["train", "--model", "tiny", "--data", "good.jsonl", "--task", "nope", "--out", "m"],
        2,
        "nope",
    ),
    "train/missing-file": (["train", "--model", "tiny", "--data", "missing.jsonl", "--out", "m"], 2, "missing.jsonl"),
    "train/bad-encoding": (
        ["train", "--model", "tiny", "--data", "bad.jsonl", "--out", "m"],
        2,
        "bad.jsonl:1: not valid UTF-8",
    ),
    "train/bad-json": (["train", "--model", "tiny", "--data", "notjson.jsonl", "--out", "m"], 2, "notjson.jsonl:2"),
    "train/bad-field": (["train", "--model", "tiny", "--data", "badfield.jsonl", "--out", "m"], 2, "badfield.jsonl:1"),
    "train/oversized-line": (
        ["train", "--model", "tiny", "--data", "big.jsonl", "--out", "m"],
        2,
        "big.jsonl:1: line longer than",
    ),
    "train/impossible-batch": (
        ["train", "--model", "tiny", "--data", "good.jsonl", "--batch-size", "0", "--out", "m"],
        2,
        "batch",
    ),
    "train/impossible-epochs": (
        ["train", "--model", "tiny", "--data", "good.jsonl", "--epochs", "-1", "--out", "m"],
        2,
        "epochs",
    ),
    "train/bad-config": (["train", "--config", "bad.yaml", "--data", "good.jsonl", "--out", "m"], 2, "bad.yaml"),
    "train/bad-config-field": (
        ["train", "--config", "train_bad_field.yaml", "--data", "good.jsonl", "--out", "m"],
        2,
        "lora_rank_typo",
    ),
    "train/bad-mixture": (
        ["train", "--model", "tiny", "--data", "good.jsonl", "--mixture", "garbage", "--out", "m"],
        2,
        "mixture",
    ),
    "eval/bad-backend-option": (
        ["eval", "--model", "tiny", "--task", "synth_arith", "-O", "enforce_eager", "--out", "o"],
        2,
        "--backend-option 'enforce_eager': expected KEY=VALUE",
    ),
    "eval/unknown-task": (["eval", "--model", "tiny", "--task", "nope", "--out", "o"], 2, "unknown task 'nope'"),
    "eval/unknown-mode": (
        ["eval", "--model", "tiny", "--task", "synth_arith", "--mode", "bogus", "--out", "o"],
        2,
        "unknown mode 'bogus'",
    ),
    "eval/unknown-model": (
        ["eval", "--model", "no-such-model", "--task", "synth_arith", "--out", "o"],
        2,
        "unknown model 'no-such-model'",
    ),
    "eval/unknown-backend": (
        ["eval", "--model", "tiny", "--backend", "bogus", "--task", "synth_arith", "--out", "o"],
        2,
        "bogus",
    ),
    "eval/impossible-k": (
        ["eval", "--model", "tiny", "--task", "synth_arith", "--k", "0", "--out", "o"],
        2,
        "k must be at least 1",
    ),
    "eval/impossible-limit": (
        ["eval", "--model", "tiny", "--task", "synth_arith", "--limit", "-3", "--out", "o"],
        2,
        "limit",
    ),
    "eval/impossible-temperature": (
        ["eval", "--model", "tiny", "--task", "synth_arith", "--temperature", "-1", "--out", "o"],
        2,
        "temperature",
    ),
    "eval/missing-file": (
        ["eval", "--model", "tiny", "--task", "synth_arith", "--data", "missing.jsonl", "--out", "o"],
        2,
        "missing.jsonl",
    ),
    "eval/bad-encoding": (
        ["eval", "--model", "tiny", "--task", "synth_arith", "--data", "bad.jsonl", "--out", "o"],
        2,
        "bad.jsonl:1: not valid UTF-8",
    ),
    "eval/bad-json": (
        ["eval", "--model", "tiny", "--task", "synth_arith", "--data", "notjson.jsonl", "--out", "o"],
        2,
        "notjson.jsonl:2",
    ),
    "eval/oversized-line": (
        ["eval", "--model", "tiny", "--task", "synth_arith", "--data", "big.jsonl", "--out", "o"],
        2,
        "big.jsonl:1: line longer than",
    ),
    "serve/unknown-model": (["serve", "no-such-model"], 2, "unknown model 'no-such-model'"),
    "serve/impossible-port": (["serve", "tiny", "--port", "70000"], 2, "port"),
    "serve/impossible-max-tokens": (["serve", "tiny", "--max-tokens", "0"], 2, "max-tokens"),
    "analyze/missing-run": (["analyze", "missing_run"], 2, "missing_run"),
    "analyze/not-a-run": (["analyze", "empty_dir"], 2, "empty_dir"),
    "analyze/unknown-invalid-policy": (["analyze", "empty_dir", "--invalid", "bogus"], 2, "bogus"),
    "report/missing-run": (["report", "missing_run"], 2, "missing_run"),
    "report/not-a-run": (["report", "empty_dir"], 2, "empty_dir"),
    "predict/unknown-metric": (["predict", "--task", "t", "--metric", "bogus", "--value", "1"], 2, "bogus"),
    "predict/missing-fit": (
        ["predict", "--task", "t", "--metric", "acc_ft", "--value", "0.5", "--fit", "missing.json"],
        2,
        "missing.json",
    ),
    "predict/bad-fit": (
        ["predict", "--task", "t", "--metric", "acc_ft", "--value", "0.5", "--fit", "notjson.jsonl"],
        2,
        "notjson.jsonl",
    ),
    "predict/impossible-value": (["predict", "--task", "t", "--metric", "acc_ft", "--value", "7"], 2, "acc_ft"),
    "tasks/unknown-category": (["tasks", "--category", "bogus"], 2, "bogus"),
    "tasks-show/unknown-task": (["tasks", "show", "nope"], 2, "unknown task 'nope'"),
    "tasks-show/unknown-mode": (["tasks", "show", "synth_arith", "--mode", "bogus"], 2, "bogus"),
    "tasks-show/unknown-style": (["tasks", "show", "synth_arith", "--style", "Z"], 2, "Z"),
    "tasks-show/impossible-index": (["tasks", "show", "synth_arith", "--index", "100000000"], 2, "index"),
    "tasks-info/unknown-task": (["tasks", "info", "nope"], 2, "unknown task 'nope'"),
    "data-validate/missing-file": (["data", "validate", "missing.jsonl"], 2, "missing.jsonl"),
    "data-validate/bad-encoding": (["data", "validate", "bad.jsonl"], 1, "bad.jsonl:1: not valid UTF-8"),
    "data-validate/oversized-line": (["data", "validate", "big.jsonl"], 1, "big.jsonl:1: line longer than"),
    "data-validate/unknown-task": (["data", "validate", "good.jsonl", "--task", "nope"], 2, "unknown task 'nope'"),
    "data-export/unknown-task": (["data", "export", "nope", "--out", "x.jsonl"], 2, "unknown task 'nope'"),
    "data-export/unknown-split": (
        ["data", "export", "synth_arith", "--split", "bogus", "--out", "x.jsonl"],
        2,
        "bogus",
    ),
    "rationales-generate/unknown-backend": (
        ["rationales", "generate", "--task", "synth_arith", "--teacher", "bogus:x", "--out", "r"],
        2,
        "unknown backend 'bogus'",
    ),
    "rationales-generate/unknown-task": (
        ["rationales", "generate", "--task", "nope", "--teacher", "oracle", "--out", "r"],
        2,
        "unknown task 'nope'",
    ),
    "rationales-generate/unknown-style": (
        ["rationales", "generate", "--task", "synth_arith", "--teacher", "oracle", "--prompt-style", "Z", "--out", "r"],
        2,
        "Z",
    ),
    "rationales-generate/impossible-n": (
        ["rationales", "generate", "--task", "synth_arith", "--teacher", "oracle", "--n", "0", "--out", "r"],
        2,
        "n",
    ),
    "rationales-generate/bad-encoding": (
        ["rationales", "generate", "--task", "synth_arith", "--teacher", "oracle", "--data", "bad.jsonl", "--out", "r"],
        2,
        "bad.jsonl:1: not valid UTF-8",
    ),
    "rationales-generate/missing-file": (
        [
            "rationales",
            "generate",
            "--task",
            "synth_arith",
            "--teacher",
            "oracle",
            "--data",
            "missing.jsonl",
            "--out",
            "r",
        ],
        2,
        "missing.jsonl",
    ),
    "rationales-judge/missing-run": (
        ["rationales", "judge", "--run", "missing_run", "--judge", "hf:tiny"],
        2,
        "missing_run",
    ),
    "rationales-judge/not-a-run": (
        ["rationales", "judge", "--run", "empty_dir", "--judge", "bogus:x"],
        2,
        "rationales.sqlite does not exist",
    ),
    "rationales-blank/missing-run": (
        ["rationales", "blank", "--run", "missing_run", "--out", "b.jsonl"],
        2,
        "missing_run",
    ),
    "rationales-blank/bad-length": (
        ["rationales", "blank", "--run", "good.jsonl", "--length", "bogus", "--out", "b.jsonl"],
        2,
        "bogus",
    ),
    "rationales-stats/missing-run": (["rationales", "stats", "missing_run"], 2, "missing_run"),
    "rationales-export/missing-run": (["rationales", "export", "missing_run", "--out", "e.jsonl"], 2, "missing_run"),
    "rationalyst-mine/unknown-task": (
        ["rationalyst", "mine", "--task", "nope", "--out", "ry"],
        2,
        "unknown task 'nope'",
    ),
    "rationalyst-mine/missing-file": (
        ["rationalyst", "mine", "--text-file", "missing.jsonl", "--out", "ry"],
        2,
        "missing.jsonl",
    ),
    "rationalyst-mine/unknown-backend": (
        ["rationalyst", "mine", "--model", "bogus:x", "--task", "synth_arith", "--out", "ry"],
        2,
        "bogus",
    ),
    "rationalyst-mine/bad-encoding": (
        ["rationalyst", "mine", "--text-file", "bad.jsonl", "--out", "ry"],
        2,
        "bad.jsonl:1",
    ),
    "rationalyst-filter/missing-run": (["rationalyst", "filter", "--out", "missing_run"], 2, "missing_run"),
    "rationalyst-train/missing-run": (
        ["rationalyst", "train", "--out", "missing_run"],
        2,
        "missing_run/rationalyst.sqlite does not exist",
    ),
    "rationalyst-solve/unknown-method": (
        ["rationalyst", "solve", "--methods", "bogus", "--task", "synth_arith", "--out", "empty_dir"],
        2,
        "bogus",
    ),
    "rationalyst-solve/unknown-task": (
        ["rationalyst", "solve", "--task", "nope", "--out", "empty_dir"],
        2,
        "unknown task 'nope'",
    ),
}


def _bad_files(d) -> None:
    (d / "bad.jsonl").write_bytes(BAD_UTF8)
    good = {
        "id": "a",
        "task": "synth_arith",
        "category": "synthetic",
        "question": "Ann has 2 pens and buys 3. How many?",
        "label": "5",
        "answer_type": "number",
    }
    (d / "good.jsonl").write_text(json.dumps(good) + "\n")
    (d / "notjson.jsonl").write_text(json.dumps(good) + "\n{oops\n")
    (d / "badfield.jsonl").write_text(json.dumps({**good, "question": 5}) + "\n")
    (d / "big.jsonl").write_text(json.dumps({**good, "question": "x" * 5000}) + "\n")
    (d / "bad.yaml").write_text("tasks: [\n")
    (d / "unknown_key.yaml").write_text("include: quick\nbogus_key: 1\n")
    (d / "unk_task.yaml").write_text("include: quick\ntasks: [synth_arith, nope]\n")
    (d / "unk_model.yaml").write_text("include: quick\nmodel: no-such-model\n")
    (d / "bad_teacher.yaml").write_text("include: quick\nteacher: {backend: 'bogus:model'}\n")
    (d / "zero_k.yaml").write_text("include: quick\neval: {k: 0}\n")
    (d / "train_bad_field.yaml").write_text("model: tiny\nlora_rank_typo: 3\n")
    (d / "empty_dir").mkdir()


MATRIX_SCRIPT = """
import json, sys
from typer.testing import CliRunner
from raftlab.cli.main import app
cases = json.loads(sys.stdin.read())
runner = CliRunner()
out = {}
for name, args in cases.items():
    res = runner.invoke(app, args)
    out[name] = {"exit_code": res.exit_code, "output": res.output,
                 "exception": None if res.exception is None or isinstance(res.exception, SystemExit)
                 else repr(res.exception)}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def bad_input_results(tmp_path_factory):
    """Every case of CASES, run through typer's test runner in ONE child interpreter (the error policy lives in the
    command group, so the installed command behaves the same; the subprocess tests below check the real entry
    point). One interpreter instead of 76 keeps the matrix at seconds on a slow CI machine, where each fresh
    interpreter took a minute; a child rather than this process keeps what the commands do to a process (signal
    handlers, logging, threads) out of the other tests."""
    import os

    tmp = tmp_path_factory.mktemp("bad_input")
    _bad_files(tmp)
    env = {**os.environ, "RAFTLAB_MAX_LINE_BYTES": "1000", "COLUMNS": "400", "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", MATRIX_SCRIPT], input=json.dumps({n: a for n, (a, _, _) in
                         CASES.items()}), capture_output=True, text=True, cwd=tmp, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def _command_paths() -> set[str]:
    import typer.main

    from raftlab.cli.main import app

    paths = set()

    def walk(cmd, prefix: str) -> None:
        if hasattr(cmd, "commands"):  # a group; one that runs without a subcommand (`tasks`) is a command too
            if getattr(cmd, "invoke_without_command", False) and prefix:
                paths.add(prefix)
            for name, sub in cmd.commands.items():
                walk(sub, f"{prefix}-{name}" if prefix else name)
        else:
            paths.add(prefix)

    walk(typer.main.get_command(app), "")
    return paths


def test_every_command_has_bad_input_cases():
    covered = {name.split("/")[0] for name in CASES}
    assert _command_paths() - covered == set()


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_clear_line_without_traceback(case, bad_input_results):
    args, code, message = CASES[case]
    res = bad_input_results[case]
    out = " ".join(res["output"].split())  # rich may wrap long lines
    assert res["exception"] is None, res["exception"]
    assert res["exit_code"] == code, out[-500:]
    assert message in out and "Traceback" not in out, out[-500:]


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
    res = _run(
        ["train", "--model", "tiny", "--data", "big.jsonl", "--out", "m"],
        tmp_path,
        env={"RAFTLAB_MAX_LINE_BYTES": "1000"},
    )
    out = res.stdout + res.stderr
    assert res.returncode == 2 and "big.jsonl:1: line longer than 1000 bytes" in out
