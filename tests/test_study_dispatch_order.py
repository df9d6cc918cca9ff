"""Several workers start the longest chains of stages first, and a study runs its stages one after another where
only one can usefully run (one core, one GPU)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from raftlab.study.cache import StageRunner
from raftlab.study.config import ExecutorConfig, load_config
from raftlab.study.executor import effective_workers, longest_chains, run_dispatched
from raftlab.study.stages import Stage, StudySteps, plan


def _stage(name, deps=(), cost=1.0):
    return Stage(name, "test", {}, tuple(deps), f"key-{name}", lambda given, out: {}, cost=cost)


def _graph():
    """Two tasks' chains after a shared source: a long train -> eval chain and short single stages."""
    return [_stage("data", cost=0.1),
            _stage("short/a", ["data"], 1), _stage("train/a", ["data"], 3), _stage("eval/a", ["train/a"], 2),
            _stage("short/b", ["data"], 1), _stage("train/b", ["data"], 2), _stage("eval/b", ["train/b"], 1),
            _stage("analysis", ["short/a", "eval/a", "short/b", "eval/b"], 0.1)]


def test_a_stage_ranks_by_its_cost_plus_its_costliest_waiting_chain():
    chain = {name: round(value, 6) for name, value in longest_chains(_graph()).items()}
    assert chain["analysis"] == 0.1
    assert chain["eval/a"] == 2.1 and chain["train/a"] == 5.1
    assert chain["train/b"] == 3.1 and chain["short/a"] == 1.1
    assert chain["data"] == 5.2  # through its costliest chain, train/a -> eval/a


def test_ready_stages_are_submitted_longest_chain_first(tmp_path):
    class Recorder:
        """Runs each job at once, in this process; records the order of submission."""

        def __init__(self):
            self.order = []

        def update_parameters(self, **kw):
            pass

        def submit(self, fn, name, work, given, folder, cores=None):
            self.order.append(name)
            result = fn(name, work, given, folder, None)
            return SimpleNamespace(job_id=name, done=lambda: True, result=lambda: result,
                                   cancel=lambda check=False: None)

    recorder = Recorder()
    run_dispatched(_graph(), StageRunner(tmp_path), ExecutorConfig(workers=1, devices=[]), {}, poll=0,
                   executor=recorder)
    # plan order would be data, short/a, train/a, eval/a, short/b, ...: the long chain goes first instead
    assert recorder.order == ["data", "train/a", "train/b", "eval/a", "short/a", "short/b", "eval/b", "analysis"]


def test_the_default_study_starts_its_rationale_trainings_first_on_two_workers(tmp_path):
    cfg = load_config("default")
    assert cfg.executor.workers == 2
    stages = plan(cfg, StudySteps.real(), Path(tmp_path))
    chain = longest_chains(stages)
    model_stages = sorted((s for s in stages if s.kind in ("train", "eval", "prompting")), key=lambda s: -chain[s.name])
    assert [s.name for s in model_stages[:2]] == ["train/raft/synth_topic", "train/raft/synth_arith_easy"]
    assert {s.name.split("/")[1] for s in model_stages[-4:]} == {"icl_label", "ft"}  # direct answers last


def test_workers_are_capped_by_the_cores_or_the_gpus(monkeypatch):
    from raftlab.study import executor

    monkeypatch.setattr(executor.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert effective_workers(ExecutorConfig(workers=2, devices=[])) == 1  # one core: one stage at a time
    monkeypatch.setattr(executor.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert effective_workers(ExecutorConfig(workers=2, devices=[])) == 2
    assert effective_workers(ExecutorConfig(workers=8, devices=[])) == 4
    assert effective_workers(ExecutorConfig(workers=2, devices=[3])) == 1  # one GPU
    assert effective_workers(ExecutorConfig(workers=3, devices=[0, 1])) == 2
    assert effective_workers(ExecutorConfig(workers=1, devices=[])) == 1
    assert effective_workers(ExecutorConfig(kind="slurm", workers=6)) == 6  # the cluster decides


def test_one_worker_where_cores_cannot_be_pinned_or_gpu_workers_lack_submitit(monkeypatch):
    import importlib.util

    from raftlab.study import executor

    monkeypatch.delattr(executor.os, "sched_getaffinity", raising=False)  # e.g. macOS
    assert effective_workers(ExecutorConfig(workers=2, devices=[])) == 1
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "submitit" else find_spec(name, *a))
    assert effective_workers(ExecutorConfig(workers=2, devices=[0, 1])) == 1


def test_one_usable_worker_runs_the_stages_in_plan_order_in_child_processes(tmp_path, monkeypatch):
    """``workers: 2`` on one core: the study takes the sequential path (no dispatcher, no submitit needed)."""
    import json

    from raftlab.study import executor, run_study

    monkeypatch.setattr(executor.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    dispatched = []
    monkeypatch.setattr(executor, "run_dispatched", lambda *a, **k: dispatched.append(1))
    base = load_config("quick").model_dump()
    base["tasks"] = base["tasks"][:1]
    base["executor"] = {"workers": 2, "devices": [], "isolate": False}
    steps = StudySteps.real()
    steps.prompt_eval = steps.judge = steps.info_gain = None
    calls = []

    def no_training(cfg, spec, arm, rat_out, out):
        calls.append(arm)
        raise RuntimeError("stop here")

    steps.train = no_training
    try:
        run_study(load_config(base), tmp_path / "run", steps=steps)
    except Exception:  # noqa: BLE001 - the first training stops the study: enough to see which path ran
        pass
    assert not dispatched and calls == ["ft"]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())["stages"]
    assert all(not str(s.get("worker", "")).startswith("job ") for s in manifest.values())


def test_stages_begun_side_by_side_get_their_own_numbers(tmp_path, caplog, monkeypatch):
    import logging

    from raftlab.study import executor

    monkeypatch.setattr(executor, "effective_workers", lambda config: config.workers)  # two even on one core

    class Immediate:
        def update_parameters(self, **kw):
            pass

        def submit(self, fn, name, work, given, folder, cores=None):
            result = fn(name, work, given, folder, None)
            return SimpleNamespace(job_id=name, done=lambda: True, result=lambda: result,
                                   cancel=lambda check=False: None)

    stages = [_stage("a"), _stage("b"), _stage("c", ["a", "b"])]
    runner = StageRunner(tmp_path)
    runner.total = len(stages)
    with caplog.at_level(logging.INFO, logger="raftlab.study.cache"):
        run_dispatched(stages, runner, ExecutorConfig(workers=2, devices=[]), {}, poll=0, executor=Immediate())
    begun = [r.getMessage() for r in caplog.records if "[run]" in r.getMessage()]
    assert begun == ["(1/3) [run] a", "(2/3) [run] b", "(3/3) [run] c"]
