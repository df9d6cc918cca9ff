"""CLI: raftlab analyze / predict / report / study (config handling) on fabricated runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from raftlab.analysis import analyze_study
from raftlab.cli.main import app

from _report_helpers import write_fake_run

runner = CliRunner()
TASKS = {"alpha": (0.3, 0.5), "beta": (0.7, 0.7), "gamma": (0.5, 0.2)}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_run(tmp_path_factory.mktemp("run"), TASKS, n=30)


def test_analyze_prints_and_writes_json(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "a.json"
    res = runner.invoke(app, ["analyze", str(run), "--out", str(out), "--n-boot", "100"])
    assert res.exit_code == 0, res.output
    saved = json.loads(out.read_text())
    expected = analyze_study(run, n_boot=100)
    assert [t["task"] for t in saved["tasks"]] == ["alpha", "beta", "gamma"]
    for row in expected.tasks:
        assert f"{row.delta.delta_acc.value:+.3f} [{row.delta.delta_acc.low:+.3f}, {row.delta.delta_acc.high:+.3f}]" \
            in res.output
    assert f"ΔECE = {expected.fit.slope:.4f}·ΔAcc" in res.output


def test_analyze_two_runs_keeps_both(run: Path, tmp_path: Path) -> None:
    other = write_fake_run(tmp_path / "other", {"alpha": (0.1, 0.9)}, n=10)
    out = tmp_path / "b.json"
    res = runner.invoke(app, ["analyze", str(run), str(other), "--out", str(out), "--n-boot", "0"])
    assert res.exit_code == 0, res.output
    names = {t["task"] for t in json.loads(out.read_text())["tasks"]}
    assert names == {f"{run.name}/alpha", "other/alpha", "beta", "gamma"}


def test_analyze_missing_run_is_clear_error(tmp_path: Path) -> None:
    res = runner.invoke(app, ["analyze", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "not a run directory" in res.output


def test_predict_published_and_own_fit(run: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["predict", "--task", "gsm8k", "--metric", "length", "--value", "200"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.strip().splitlines()[-1])["delta_acc"] == pytest.approx(0.0029 * 200 - 0.5567)
    res = runner.invoke(app, ["predict", "--task", "x", "--metric", "acc_ft", "--value", "0.5"])
    assert json.loads(res.output.strip().splitlines()[-1])["delta_acc"] == pytest.approx(-0.8031 * 0.5 + 0.6730)
    # the user's own fit from an analysis.json of their study
    analysis = tmp_path / "analysis.json"
    result = analyze_study(run, n_boot=0)
    result.save(str(analysis))
    own = next(f for f in result.difficulty_fits if f.x == "acc_ft" and f.y == "delta_acc")
    res = runner.invoke(app, ["predict", "--task", "new", "--metric", "acc_ft", "--value", "0.4",
                              "--fit", str(analysis)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.strip().splitlines()[-1])["delta_acc"] == pytest.approx(own.predict(0.4))
    # acc_ft measured in a run
    res = runner.invoke(app, ["predict", "--task", "alpha", "--run", str(run)])
    acc = result.task("alpha").delta.acc_ft
    assert json.loads(res.output.strip().splitlines()[-1])["value"] == pytest.approx(acc)


def test_predict_errors(tmp_path: Path) -> None:
    res = runner.invoke(app, ["predict", "--task", "t", "--metric", "bogus", "--value", "1"])
    assert res.exit_code == 2 and "no published fit" in res.output
    res = runner.invoke(app, ["predict", "--task", "t", "--metric", "length"])
    assert res.exit_code != 0 and "--value" in res.output


@pytest.mark.slow
def test_report_cli(run: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["report", str(run), "--out", str(tmp_path / "rep"), "--samples", "1"])
    assert res.exit_code == 0, res.output
    assert Path(res.output.strip().splitlines()[-1]) == tmp_path / "rep" / "report.html"
    res = runner.invoke(app, ["report", str(tmp_path / "empty")])
    assert res.exit_code == 2 and "not a run directory" in res.output


def test_study_cli_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "s.yaml"
    bad.write_text("tasks: [synth_arith]\nmodel: tiny\neval: {k: -1}\n")
    res = runner.invoke(app, ["study", str(bad), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "eval.k" in res.output
    res = runner.invoke(app, ["study", "--quick", "--show-config"])
    assert res.exit_code == 0 and "name: quick" in res.output


@pytest.mark.parametrize("args", [["--plan", "--json"], ["--quick", "--plan", "--json"]], ids=["default", "quick"])
def test_plan_json_lists_every_stage_and_creates_nothing(args, tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = runner.invoke(app, ["study", *args, "--out", str(out)])
    assert res.exit_code == 0, res.output
    plan = json.loads(res.stdout)
    stages = plan["stages"]
    names = [s["stage"] for s in stages]
    assert names[-2:] == ["analysis", "report"] and "train/raft/synth_topic" in names
    assert all(s["status"] == "would run" and len(s["key"]) == 16 for s in stages)
    assert len({s["key"] for s in stages}) == len(stages)
    seen: set[str] = set()
    for s in stages:  # dependencies come first
        assert set(s["deps"]) <= seen, s["stage"]
        seen.add(s["stage"])
    assert not out.exists()
    text = runner.invoke(app, ["study", *args[:-1], "--out", str(out)])
    assert text.exit_code == 0 and f"{len(stages)} stages in {out}: {len(stages)} would run" in text.stdout
    assert not out.exists()


def test_json_without_plan_is_refused(tmp_path: Path) -> None:
    res = runner.invoke(app, ["study", "--quick", "--json", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and not (tmp_path / "r").exists()


def test_paper_preset_is_the_papers_protocol() -> None:
    """Sec. 4 / App. E Table 2: 18 tasks (and SUBJ, CoinFlip to validate the fit, App. B.1), full test splits,
    20k kept rationales, 10 gold-filter attempts, full finetuning for 3 epochs at lr 5e-6, 4 per device, 64 per
    step, gradient checkpointing, bf16, max length 2048; k = 10 at T = 0.8."""
    from raftlab.study import load_config

    cfg = load_config("paper")
    assert len(cfg.tasks) == 20 and all(t.test_limit is None and t.train_limit == 20000 for t in cfg.tasks)
    assert sum(t.role == "fit" for t in cfg.tasks) == 18
    assert cfg.teacher.kept_target == 20000
    assert {"gsm8k", "trec", "winogrande", "sst2"} <= {t.name for t in cfg.tasks}
    assert cfg.teacher.max_retries == 10 and cfg.teacher.backend.startswith("openai:")
    t = cfg.train
    assert (t.profile, t.lora, t.epochs, t.learning_rate, t.batch_size, t.global_batch) == ("paper", False, 3, 5e-6, 4, 64)
    assert (t.gradient_checkpointing, t.bf16, t.max_length, t.weight_decay) == (True, True, 2048, 0.0)
    assert (cfg.eval.mode, cfg.eval.k, cfg.eval.temperature, cfg.eval.backend) == ("sc", 10, 0.8, "vllm")
    assert cfg.arms == ["ft", "raft"]


def test_preset_flag_and_its_help() -> None:
    res = runner.invoke(app, ["study", "--preset", "paper", "--show-config"])
    assert res.exit_code == 0 and "name: paper" in res.stdout and "global_batch: 64" in res.stdout
    assert runner.invoke(app, ["study", "--preset", "nope"]).exit_code == 2
    assert runner.invoke(app, ["study", "quick", "--preset", "paper"]).exit_code == 2
    help_text = runner.invoke(app, ["study", "--help"]).stdout
    assert all(name in help_text for name in ("default:", "quick:", "real:", "paper:"))


def test_real_preset_plans_offline_with_a_judge_per_task(tmp_path) -> None:
    """The real-task preset: the paper's tasks with SmolLM2 as its own teacher, judged (App. C) on every task, full
    finetuning; its plan needs nothing but the local data and creates nothing."""
    import json

    from raftlab.study import load_config

    cfg = load_config("real")
    assert cfg.teacher.backend == "hf:smollm2" and cfg.judge_backend() == "hf:smollm2"
    assert {"sst2", "subj", "agnews"} <= {t.name for t in cfg.tasks} and not cfg.train.lora
    out = tmp_path / "r"
    res = runner.invoke(app, ["study", "--preset", "real", "--plan", "--json", "--out", str(out)])
    assert res.exit_code == 0, res.output
    names = {s["stage"] for s in json.loads(res.stdout)["stages"]}
    assert {f"judge/{t.name}" for t in cfg.tasks} <= names and not out.exists()
