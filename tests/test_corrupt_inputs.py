"""Damaged files a user may hold (configs, JSONL data, model and adapter folders, a run's manifest, an eval's
settings, records and metrics, a saved analysis, a SQLite store): the command a user would run on them says so in
one line ``error: <file>: <what is wrong>; <what to do>``, exits 2 and shows no traceback."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from _report_helpers import write_fake_run

runner = CliRunner()
GOOD = {"id": "a", "task": "synth_arith", "category": "synthetic", "question": "Ann has 2 pens and buys 3. How many?",
        "label": "5", "answer_type": "number"}
EVAL = ["--task", "synth_arith", "--data", "good.jsonl", "--k", "1", "--mode", "cot", "--max-new-tokens", "4"]


def _invoke(args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch):
    from raftlab.cli.main import app

    monkeypatch.chdir(cwd)
    return runner.invoke(app, ["-q", *args])


def assert_one_error_line(res, name: str) -> str:
    """Exit code 2 and exactly one ``error:`` line, the last line of stderr, naming ``name``; no traceback."""
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert res.exit_code == 2, (res.exit_code, res.stderr[-2000:], repr(res.exception))
    assert len(errors) == 1 and lines[-1] == errors[0], res.stderr[-2000:]
    assert name in errors[0], errors[0]
    assert "Traceback" not in res.output + res.stderr
    return errors[0]


# ----------------------------------------------------------------------------- files read before any model


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("corrupt")
    (d / "good.jsonl").write_text(json.dumps(GOOD) + "\n")
    (d / "torn.jsonl").write_text(json.dumps(GOOD) + "\n" + json.dumps({**GOOD, "id": "b"})[:30])
    (d / "study.yaml").write_text("include: quick\ntasks: [synth_arith,\n")
    (d / "train.yaml").write_text("model: tiny\nlr: [\n")
    (d / "run_manifest").mkdir()
    (d / "run_manifest" / "manifest.json").write_text('{"stages": {"data/synth_arith": {"hash": "ab')
    for name in ("records", "settings", "metrics", "analysis"):
        write_fake_run(d / f"run_{name}", {"synth_arith": (0.5, 0.6)}, n=10)
    folder = d / "run_records" / "eval" / "ft" / "synth_arith"
    lines = (folder / "records.jsonl").read_text().splitlines(keepends=True)
    (folder / "records.jsonl").write_text("".join([*lines[:3], lines[3][:25] + "\n", *lines[4:]]))
    (d / "run_settings" / "eval" / "raft" / "synth_arith" / "settings.json").write_text('{"task": "synth_ar')
    (d / "run_metrics" / "eval" / "ft" / "synth_arith" / "metrics.json").write_text("")
    (d / "run_analysis" / "analysis").mkdir()
    (d / "run_analysis" / "analysis" / "analysis.json").write_text('{"tasks": [{"task": "synth_arith", ')
    (d / "store").mkdir()
    (d / "store" / "rationales.sqlite").write_bytes(b"SQLite format 3\x00" + b"\x07" * 300)
    return d


CASES = {  # name -> (command, the damaged file the error must name)
    "study-config-yaml": (["study", "study.yaml", "--out", "run"], "study.yaml"),
    "train-config-yaml": (["train", "--config", "train.yaml", "--data", "good.jsonl", "--out", "m"], "train.yaml"),
    "train-data-jsonl": (["train", "--model", "tiny", "--data", "torn.jsonl", "--out", "m"], "torn.jsonl:2"),
    "eval-data-jsonl": (["eval", "--model", "tiny", "--task", "synth_arith", "--data", "torn.jsonl", "--out", "o"],
                        "torn.jsonl:2"),
    "study-manifest": (["study", "--quick", "--out", "run_manifest"], "run_manifest/manifest.json"),
    "analyze-records": (["analyze", "run_records", "--n-boot", "0"], "ft/synth_arith/records.jsonl:4"),
    "report-records": (["report", "run_records"], "ft/synth_arith/records.jsonl:4"),
    "analyze-settings": (["analyze", "run_settings", "--n-boot", "0"], "raft/synth_arith/settings.json"),
    "analyze-metrics": (["analyze", "run_metrics", "--n-boot", "0"], "ft/synth_arith/metrics.json"),
    "report-analysis": (["report", "run_analysis"], "analysis/analysis.json"),
    "rationales-store": (["rationales", "stats", "store"], "rationales.sqlite"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_damaged_file_is_one_clear_line(case: str, files: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args, name = CASES[case]
    assert_one_error_line(_invoke(args, files, monkeypatch), name)


def test_every_line_of_a_yaml_error_is_in_one_line(files: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args, name = CASES["train-config-yaml"]
    line = assert_one_error_line(_invoke(args, files, monkeypatch), name)
    assert "invalid YAML" in line and "line 3, column 1" in line


def test_a_sqlite_error_from_anywhere_is_a_user_error() -> None:
    """A bare ``sqlite3.DatabaseError`` (a store read outside :mod:`raftlab.storage`) exits 2 with one line."""
    from raftlab.cli.main import _Commands

    app = typer.Typer(cls=_Commands)

    @app.command()
    def read() -> None:
        raise sqlite3.DatabaseError("database disk image is malformed")

    @app.command()
    def other() -> None:
        pass

    res = runner.invoke(app, ["read"])
    assert res.exit_code == 2 and res.stderr.startswith("error: SQLite: database disk image is malformed")
    assert len(res.stderr.strip().splitlines()) == 1


def test_a_file_without_tensors_is_intact(tmp_path: Path) -> None:
    from raftlab.corrupt import safetensors_problem

    empty = tmp_path / "empty.safetensors"  # an 8-byte header length and a "{}" header
    empty.write_bytes((2).to_bytes(8, "little") + b"{}")
    assert safetensors_problem(empty) is None
    empty.write_bytes((2).to_bytes(8, "little") + b"{")
    assert "truncated" in safetensors_problem(empty)


# ----------------------------------------------------------------------------- model and adapter folders


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Damaged copies of the tiny model's folder and of a LoRA adapter over it (made with peft, not trained)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from raftlab.models import tiny_model_dir

    d = tmp_path_factory.mktemp("corrupt_models")
    (d / "good.jsonl").write_text(json.dumps(GOOD) + "\n")
    tiny = tiny_model_dir("tiny")
    adapter = d / "adapter"
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny), LoraConfig(r=2, target_modules=["q_proj", "v_proj"])
                   ).save_pretrained(adapter)

    def copy(src: Path, name: str) -> Path:
        shutil.copytree(src, d / name, ignore=shutil.ignore_patterns(".complete"))
        return d / name

    (copy(adapter, "adapter_config") / "adapter_config.json").write_text('{"base_model_name_or_path": "tiny",\n')
    with open(copy(adapter, "adapter_weights") / "adapter_model.safetensors", "r+b") as fh:
        fh.truncate(fh.seek(0, 2) // 2)
    (copy(adapter, "adapter_summary") / "train_summary.json").write_text('{"config": {"model": "tiny"')
    with open(copy(tiny, "model_weights") / "model.safetensors", "r+b") as fh:
        fh.truncate(fh.seek(0, 2) - 100)
    (copy(tiny, "model_config") / "config.json").write_text('{"architectures": ["LlamaForCausalLM"],')
    (copy(tiny, "model_tokenizer") / "tokenizer.json").write_bytes(b"\xff\xfe garbage")
    (d / "eval_settings").mkdir()
    (d / "eval_settings" / "settings.json").write_text('{"task": "synth_arith", "mode": ')
    return d


MODEL_CASES = {  # name -> (--model, --out, the damaged file the error must name)
    "adapter_config": ("adapter_config", "o", "adapter_config/adapter_config.json"),
    "adapter_weights": ("adapter_weights", "o", "adapter_weights/adapter_model.safetensors"),
    "adapter_summary": ("adapter_summary", "o", "adapter_summary/train_summary.json"),
    "model_weights": ("model_weights", "o", "model_weights/model.safetensors"),
    "model_config": ("model_config", "o", "model_config/config.json"),
    "model_tokenizer": ("model_tokenizer", "o", "model_tokenizer/tokenizer.json"),
    "eval_settings": ("tiny", "eval_settings", "eval_settings/settings.json"),
}


def test_intact_model_folders_are_not_reported_damaged(models: Path) -> None:
    from raftlab.corrupt import folder_problem
    from raftlab.models import tiny_model_dir

    assert folder_problem(tiny_model_dir("tiny")) is None and folder_problem(models / "adapter") is None


@pytest.mark.parametrize("case", sorted(MODEL_CASES))
def test_damaged_model_folder_is_one_clear_line(case: str, models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, out, name = MODEL_CASES[case]
    model = model if model == "tiny" else f"./{model}"
    line = assert_one_error_line(_invoke(["eval", "--model", model, *EVAL, "--out", out], models, monkeypatch), name)
    if case.startswith("adapter"):
        assert "train it again" in line
