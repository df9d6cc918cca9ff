"""Stage caching/resume of run_study, with stand-in step functions (no models)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raftlab.study import ConfigError, StageChangedError, StageFailed, StudySteps, load_config, run_study

CFG = {"name": "t", "model": "tiny", "tasks": ["a", {"name": "b", "test_limit": 4}], "seed": 1}


class Recorder:
    """Stand-in steps that log each call and can crash once at a chosen stage."""

    def __init__(self, crash_at: str | None = None) -> None:
        self.calls: list[str] = []
        self.crash_at = crash_at

    def _do(self, name: str, out: Path, **extra) -> dict:
        self.calls.append(name)
        (out / "done.txt").write_text(name)
        if self.crash_at == name:
            self.crash_at = None
            raise KeyboardInterrupt(name)
        return {"marker": name, **extra}

    def steps(self) -> StudySteps:
        return StudySteps(
            prepare_data=lambda c, s, d: self._do(f"data/{s.name}", d),
            rationales=lambda c, s, data, d: self._do(f"rationales/{s.name}", d),
            train=lambda c, s, arm, rat, d: self._do(f"train/{arm}/{s.name}", d),
            evaluate=lambda c, s, arm, tr, data, d, rats: self._do(f"eval/{arm}/{s.name}", d),
            analyze=lambda c, run, d, stages: self._do("analysis", d),
            report=lambda c, run, an, d, stages: self._do("report", d, html="report.html"),
            info_gain=lambda c, s, trains, rat, d: self._do(f"info_gain/{s.name}", d, arms=sorted(trains)),
            mean_of_task=lambda c, s, rats, data, d: self._do(f"difficulty/mean_of_task/{s.name}", d,
                                                              tasks=sorted(rats)),
        )


def all_stages() -> list[str]:
    out = []
    for t in ("a", "b"):
        out += [f"data/{t}", f"rationales/{t}"]
        for arm in ("ft", "raft"):
            out += [f"train/{arm}/{t}", f"eval/{arm}/{t}"]
    return out + ["analysis", "report"]


def test_runs_every_stage_once_then_skips(tmp_path: Path) -> None:
    rec = Recorder()
    res = run_study(CFG, tmp_path, steps=rec.steps())
    assert rec.calls == all_stages()
    assert res.report == tmp_path / "report/report.html"
    manifest = json.loads((tmp_path / "manifest.json").read_text())["stages"]
    assert all(manifest[s]["status"] == "done" for s in all_stages())
    rec2 = Recorder()
    res2 = run_study(CFG, tmp_path, steps=rec2.steps())
    assert rec2.calls == [] and res2.executed == [] and sorted(res2.skipped) == sorted(all_stages())


def test_interrupt_resumes_where_it_stopped(tmp_path: Path) -> None:
    rec = Recorder(crash_at="eval/raft/a")
    with pytest.raises(KeyboardInterrupt):
        run_study(CFG, tmp_path, steps=rec.steps())
    manifest = json.loads((tmp_path / "manifest.json").read_text())["stages"]
    assert manifest["eval/raft/a"]["status"] == "running"
    assert (tmp_path / "eval/raft/a/done.txt").exists()  # partial work kept for the stage to resume
    rec2 = Recorder()
    run_study(CFG, tmp_path, steps=rec2.steps())
    assert rec2.calls == all_stages()[all_stages().index("eval/raft/a"):]


def test_changed_config_errors_or_reruns_affected(tmp_path: Path) -> None:
    run_study(CFG, tmp_path, steps=Recorder().steps())
    changed = {**CFG, "eval": {"k": 3}}
    with pytest.raises(StageChangedError, match="eval/ft/a.*--rerun-changed"):
        run_study(changed, tmp_path, steps=Recorder().steps())
    assert "k: 10" in (tmp_path / "study.yaml").read_text()  # still the config of the finished run
    rec = Recorder()
    run_study(changed, tmp_path, steps=rec.steps(), on_change="rerun")
    assert rec.calls == [s for s in all_stages() if s.startswith("eval/")] + ["analysis", "report"]
    # an upstream change (teacher) invalidates everything downstream of the rationales of every task
    rec = Recorder()
    run_study({**changed, "teacher": {"style": "B"}}, tmp_path, steps=rec.steps(), on_change="rerun")
    assert rec.calls == [s for s in all_stages() if not s.startswith("data/")]


def test_changed_stage_folder_is_cleared_on_rerun(tmp_path: Path) -> None:
    run_study(CFG, tmp_path, steps=Recorder().steps())
    stale = tmp_path / "eval/ft/a/stale.jsonl"
    stale.write_text("{}\n")
    run_study({**CFG, "eval": {"k": 2}}, tmp_path, steps=Recorder().steps(), on_change="rerun")
    assert not stale.exists()


def test_config_errors_name_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks: [a]\neval:\n  k: 0\narms: [ft]\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert str(bad) in str(err.value) and "eval.k" in str(err.value) and "arms" in str(err.value)
    with pytest.raises(ConfigError, match="unknown_field"):
        load_config({"tasks": ["a"], "unknown_field": 1})
    with pytest.raises(ConfigError, match="invalid YAML"):
        (tmp_path / "broken.yaml").write_text("tasks: [a\n")
        load_config(tmp_path / "broken.yaml")


def test_include_merges_base_config(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("model: tiny\ntasks: [a, b]\neval: {k: 5, temperature: 0.5}\n")
    (tmp_path / "child.yaml").write_text("include: base.yaml\neval: {k: 7}\nseed: 3\n")
    cfg = load_config(tmp_path / "child.yaml")
    assert cfg.eval.k == 7 and cfg.eval.temperature == 0.5 and cfg.seed == 3 and [t.name for t in cfg.tasks] == ["a", "b"]


def test_info_gain_stage_runs_after_both_arms(tmp_path: Path) -> None:
    rec = Recorder()
    res = run_study({**CFG, "info_gain_examples": 2}, tmp_path, steps=rec.steps())
    assert rec.calls.index("info_gain/a") > rec.calls.index("eval/raft/a")
    assert res.outputs["info_gain/b"]["arms"] == ["ft", "raft"]
    manifest = json.loads((tmp_path / "manifest.json").read_text())["stages"]
    assert set(manifest["report"]["deps"]) == {"analysis", "info_gain/a", "info_gain/b"}


def test_mean_of_task_stage_after_all_rationales(tmp_path: Path) -> None:
    cfg = {**CFG, "tasks": ["a", "b", "c", "d"], "mean_of_task": True}
    rec = Recorder()
    res = run_study(cfg, tmp_path, steps=rec.steps())
    first = rec.calls.index("difficulty/mean_of_task/a")
    assert first > max(rec.calls.index(f"rationales/{t}") for t in "abcd")
    assert rec.calls.index("analysis") > rec.calls.index("difficulty/mean_of_task/d")
    assert res.outputs["difficulty/mean_of_task/b"]["tasks"] == ["a", "b", "c", "d"]
    with pytest.raises(ConfigError, match="at least 4 tasks"):
        load_config({**CFG, "mean_of_task": True})


def test_failing_stage_is_named_and_resumable(tmp_path: Path) -> None:
    rec = Recorder()
    steps = rec.steps()
    good_train = steps.train

    def broken_train(c, s, arm, rat, d):
        raise ValueError("out of memory")

    steps.train = broken_train
    with pytest.raises(StageFailed, match=r"stage 'train/ft/a' failed \(ValueError: out of memory\).*rerun"):
        run_study(CFG, tmp_path, steps=steps)
    steps.train = good_train
    rec.calls.clear()
    run_study(CFG, tmp_path, steps=steps)
    assert rec.calls[0] == "train/ft/a"  # data and rationales were kept


def test_both_prompts_evaluates_every_arm_with_direct_and_cot(tmp_path: Path) -> None:
    """NLURC's contrast: each trained arm also evaluated with the other prompt, as arm <arm>@<mode>."""
    rec = Recorder()
    run_study({**CFG, "arms": ["ft", "raft", "explain"], "eval": {"both_prompts": True}}, tmp_path, steps=rec.steps())
    evals = sorted(c for c in rec.calls if c.startswith("eval/") and c.endswith("/a"))
    assert evals == ["eval/explain/a", "eval/explain@cot/a", "eval/ft/a", "eval/ft@cot/a", "eval/raft/a",
                     "eval/raft@direct/a"]
    manifest = json.loads((tmp_path / "manifest.json").read_text())["stages"]
    assert set(manifest["eval/ft@cot/a"]["deps"]) == {"train/ft/a", "data/a", "rationales/a"}


def test_align_and_mix_are_evaluated_direct_as_nlurc_and_with_cot_too(tmp_path: Path) -> None:
    """NLURC reports Align and Mix with direct inference; both prompts are evaluated for them by default."""
    rec = Recorder()
    run_study({**CFG, "arms": ["ft", "raft", "align", "mix"]}, tmp_path, steps=rec.steps())
    evals = sorted(c for c in rec.calls if c.startswith("eval/") and c.endswith("/a"))
    assert evals == ["eval/align/a", "eval/align@cot/a", "eval/ft/a", "eval/mix/a", "eval/mix@cot/a",
                     "eval/raft/a"]
    from raftlab.study.config import ArmEval

    assert ArmEval.parse("align") == ArmEval("align", "direct") and ArmEval.parse("mix@cot") == ArmEval("mix", "cot")
    assert str(ArmEval("mix", "cot")) == "mix@cot" and str(ArmEval("align", "direct")) == "align"


def test_leave_one_task_out_trains_on_the_other_tasks(tmp_path: Path) -> None:
    seen = {}
    rec = Recorder()
    steps = rec.steps()

    def train(c, s, arm, rats, d):
        seen[(arm, s.name)] = sorted(r["marker"] for r in (rats if isinstance(rats, list) else [rats]))
        return rec._do(f"train/{arm}/{s.name}", d)

    steps.train = train
    run_study({**CFG, "tasks": ["a", "b", "c"], "protocol": "leave_one_task_out"}, tmp_path, steps=steps)
    assert seen[("raft", "a")] == ["rationales/b", "rationales/c"] and seen[("ft", "c")] == ["rationales/a",
                                                                                             "rationales/b"]
    manifest = json.loads((tmp_path / "manifest.json").read_text())["stages"]
    assert set(manifest["train/raft/b"]["deps"]) == {"rationales/a", "rationales/c"}
    with pytest.raises(ConfigError, match="at least 2 tasks"):
        load_config({**CFG, "tasks": ["a"], "protocol": "leave_one_task_out"})


def test_leave_one_task_out_training_uses_each_examples_own_task(tmp_path: Path, monkeypatch) -> None:
    """The held-out task's name must not be forced onto the other tasks' examples (their own prompts apply)."""
    import raftlab.training
    from raftlab.study.work.train import train

    seen = []
    monkeypatch.setattr(raftlab.training, "train", lambda config: seen.append(config) or config.out)
    cfg = load_config({**CFG, "tasks": ["synth_arith", "synth_topic"], "protocol": "leave_one_task_out"})
    (tmp_path / "r").mkdir()
    rat = {"rationales": "rationales.jsonl", "_stage_dir": str(tmp_path / "r")}
    train(cfg, cfg.tasks[0], "raft", rat, tmp_path)
    assert seen[0].task is None and seen[0].data == str(tmp_path / "r" / "rationales.jsonl")
    per_task = load_config({**CFG, "tasks": ["synth_arith"]})
    train(per_task, per_task.tasks[0], "raft", rat, tmp_path)
    assert seen[1].task == "synth_arith"
