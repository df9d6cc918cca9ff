"""The quick study dispatched to two local workers (forked children on a CPU host) gives the same results as the
sequential run, with the same manifest semantics; a failing stage is reported once, naming its worker."""

from __future__ import annotations

import json

import pytest

from raftlab.study import run_study
from raftlab.study.config import load_config

pytestmark = pytest.mark.slow


def _records(run, arm, task):
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (run / "eval" / arm / task / "records.jsonl").read_text().splitlines()]


@pytest.fixture
def two_workers_anywhere(monkeypatch):
    """Two workers even on a one-core runner (they then share the core): these tests are about dispatching."""
    from raftlab.study import executor

    monkeypatch.setattr(executor, "effective_workers", lambda config: config.workers)


def test_two_workers_give_the_sequential_results(tmp_path, two_workers_anywhere):
    base = load_config("quick").model_dump()
    base["tasks"] = base["tasks"][:1]
    sequential = run_study(load_config(base), tmp_path / "seq")
    parallel = run_study(load_config({**base, "executor": {"kind": "local", "workers": 2, "devices": []}}),
                         tmp_path / "par")
    assert sorted(parallel.executed) == sorted(sequential.executed)
    seq_m = json.loads((tmp_path / "seq" / "manifest.json").read_text())["stages"]
    par_m = json.loads((tmp_path / "par" / "manifest.json").read_text())["stages"]
    assert {n: s["hash"] for n, s in par_m.items()} == {n: s["hash"] for n, s in seq_m.items()}
    assert all(s["status"] == "done" for s in par_m.values())
    assert not list((tmp_path / "seq").glob("train/*/*/model/checkpoints"))  # a finished stage keeps no checkpoints
    assert any(s.get("worker", "").startswith("job ") for s in par_m.values())
    for task in ("synth_topic",):
        for arm in ("icl_label", "icl_rationale", "ft", "raft"):
            assert _records(tmp_path / "par", arm, task) == _records(tmp_path / "seq", arm, task)
    # a rerun with workers skips everything, as a sequential rerun does
    again = run_study(load_config({**base, "executor": {"kind": "local", "workers": 2, "devices": []}}),
                      tmp_path / "par")
    assert again.executed == [] and len(again.skipped) == len(par_m)


def test_a_failed_stage_in_a_worker_is_reported_once_with_its_worker(tmp_path, two_workers_anywhere):
    from raftlab.study.cache import StageFailed
    from raftlab.study.stages import StudySteps

    def broken_train(cfg, spec, arm, rat_out, out):
        raise RuntimeError("disk full (simulated)")

    steps = StudySteps.real()
    steps.train = broken_train
    base = load_config("quick").model_dump()
    base["tasks"] = base["tasks"][:1]
    cfg = load_config({**base, "executor": {"kind": "local", "workers": 2, "devices": []}})
    with pytest.raises(StageFailed, match=r"stage 'train/(ft|raft)/synth_topic' failed \(RuntimeError: disk full "
                                          r"\(simulated\)\); its partial work is in \S+\. Fix the cause and rerun "
                                          r"the same command to resume\. \(worker job \d+\)$") as failed:
        run_study(cfg, tmp_path / "run", steps=steps)
    assert str(failed.value).count("partial work") == 1


def test_local_workers_are_pinned_one_stage_per_gpu(tmp_path):
    """With devices (GPUs), each running stage gets one GPU of its own, and no more stages run than GPUs."""
    from types import SimpleNamespace

    from raftlab.study.cache import StageRunner
    from raftlab.study.config import ExecutorConfig
    from raftlab.study.executor import run_dispatched
    from raftlab.study.stages import Stage

    class FakeExecutor:
        """Runs each job at once in this process; records the GPU each job was given."""

        def __init__(self):
            self.params, self.gpus, self.max_running = {}, [], 0

        def update_parameters(self, **kw):
            self.params.update(kw)

        def submit(self, fn, *args):
            self.gpus.append(self.params["visible_gpus"])
            result = fn(*args)
            return SimpleNamespace(job_id=str(len(self.gpus)), done=lambda: True, result=lambda: result,
                                   cancel=lambda check=False: None)

    stages = [Stage(f"s{i}", "test", {"i": i}, (), f"key{i}", lambda given, out, i=i: {"i": i}) for i in range(5)]
    fake = FakeExecutor()
    outputs: dict = {}
    run_dispatched(stages, StageRunner(tmp_path), ExecutorConfig(workers=8, devices=[2, 3]), outputs, executor=fake)
    assert [outputs[f"s{i}"]["i"] for i in range(5)] == list(range(5))
    assert set(fake.gpus) <= {(2,), (3,)} and fake.gpus[:2] == [(2,), (3,)]


def test_core_groups_split_the_cores_evenly(monkeypatch):
    from raftlab.study import executor

    monkeypatch.setattr(executor.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4}, raising=False)
    assert executor.core_groups(2) == [(0, 1, 2), (3, 4)]
    assert executor.core_groups(5) == [(0,), (1,), (2,), (3,), (4,)]
    assert executor.core_groups(6) == []  # more workers than cores: they share all of them
    assert executor.core_groups(1) == []


def test_cpu_workers_run_in_forked_children_pinned_to_their_cores(tmp_path, caplog):
    """On a host without GPUs each running stage is a child of the fork server on its own cores, with as many
    torch threads; log records of the children come through this process."""
    import logging
    import os

    from raftlab.study.cache import StageRunner
    from raftlab.study.config import ExecutorConfig
    from raftlab.study.executor import core_groups, run_dispatched
    from raftlab.study.stages import Stage

    def where(given, out):
        import torch

        logging.getLogger("raftlab.test").warning(f"stage in {os.getpid()}")
        return {"pid": os.getpid(), "cores": sorted(os.sched_getaffinity(0)), "threads": torch.get_num_threads()}

    stages = [Stage(f"s{i}", "test", {"i": i}, (), f"key{i}", where) for i in range(3)]
    outputs: dict = {}
    run_dispatched(stages, StageRunner(tmp_path), ExecutorConfig(workers=2, devices=[]), outputs)
    assert {o["pid"] for o in outputs.values()}.isdisjoint({os.getpid()})
    assert {f"stage in {o['pid']}" for o in outputs.values()} <= {r.getMessage() for r in caplog.records}
    groups = core_groups(2)
    if not groups:
        pytest.skip(f"this host has {len(os.sched_getaffinity(0))} core(s): no pinning to check (reported skip)")
    for o in outputs.values():
        assert tuple(o["cores"]) in groups and o["threads"] == len(o["cores"])


def test_ctrl_c_in_one_forked_worker_stops_the_others_and_they_save_their_work(tmp_path, two_workers_anywhere):
    """With CPU workers, a stage interrupted in its child stops the study; a stage still running in the other
    worker is interrupted too (SIGINT) and gets to save its partial work before its process ends."""
    import time

    from raftlab.study.cache import StageRunner
    from raftlab.study.config import ExecutorConfig
    from raftlab.study.executor import run_dispatched
    from raftlab.study.stages import Stage

    runner = StageRunner(tmp_path)
    other = runner.stage_dir("waits")

    def waits(given, out):
        deadline = time.monotonic() + 120
        try:
            (out / "started").write_text("")  # inside the try: an interrupt from the moment the file exists is caught
            while time.monotonic() < deadline:  # runs until interrupted (ends on its own if never: the test fails)
                time.sleep(0.05)
        except KeyboardInterrupt:
            (out / "saved").write_text("partial work")
            raise
        return {}

    def interrupted(given, out):
        deadline = time.monotonic() + 120
        while not (other / "started").exists():  # both stages are running
            if time.monotonic() > deadline:
                raise RuntimeError("the other stage never started")
            time.sleep(0.05)
        raise KeyboardInterrupt

    stages = [Stage("waits", "test", {}, (), "k1", waits), Stage("interrupted", "test", {}, (), "k2", interrupted)]
    with pytest.raises(KeyboardInterrupt):
        run_dispatched(stages, runner, ExecutorConfig(workers=2, devices=[]), {})
    assert (other / "saved").read_text() == "partial work"
    assert runner.stages["waits"]["status"] != "done"


def test_a_worker_killed_beside_another_suggests_one_worker(tmp_path, two_workers_anywhere):
    import os
    import signal

    from raftlab.study.cache import StageFailed, StageRunner
    from raftlab.study.config import ExecutorConfig
    from raftlab.study.executor import run_dispatched
    from raftlab.study.stages import Stage

    def killed(given, out):
        os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer would

    stages = [Stage("killed", "test", {}, (), "k1", killed), Stage("other", "test", {}, (), "k2", lambda g, o: {})]
    with pytest.raises(StageFailed, match=r"killed by signal 9 .*\(worker job \d+\) Several stages ran at once: "
                                          r"`executor: \{workers: 1\}` runs one at a time, in less memory, or "
                                          r"`serial_kinds: \[train\]` never runs two trainings at once\."):
        run_dispatched(stages, StageRunner(tmp_path), ExecutorConfig(workers=2, devices=[]), {})


def test_serial_kinds_never_run_together(tmp_path, two_workers_anywhere):
    """``serial_kinds``: at most one stage of such a kind runs at a time; others fill the remaining workers."""
    from types import SimpleNamespace

    from raftlab.study.cache import StageRunner
    from raftlab.study.config import ExecutorConfig
    from raftlab.study.executor import run_dispatched
    from raftlab.study.stages import Stage

    class SlowExecutor:
        """Each job finishes on the second time it is asked; records which kinds ran side by side."""

        def __init__(self):
            self.running, self.together = [], []

        def update_parameters(self, **kw):
            pass

        def submit(self, fn, name, *args):
            kind = name.split("/")[0]
            self.running.append(kind)
            self.together.append(list(self.running))
            asked = []

            def done():
                asked.append(1)
                if len(asked) == 2:
                    self.running.remove(kind)
                return len(asked) >= 2

            return SimpleNamespace(job_id=name, done=done, result=lambda: fn(name, *args),
                                   cancel=lambda check=False: None)

    stages = [Stage(f"{kind}/{i}", kind, {"i": i}, (), f"{kind}{i}", lambda given, out: {})
              for kind in ("train", "eval") for i in range(3)]  # trains first: without the rule two would pair
    fake = SlowExecutor()
    run_dispatched(stages, StageRunner(tmp_path), ExecutorConfig(workers=2, devices=[], serial_kinds=["train"]),
                   {}, poll=0, executor=fake)
    assert all(group.count("train") <= 1 for group in fake.together)
    assert any(len(group) == 2 for group in fake.together)  # the other worker was used
