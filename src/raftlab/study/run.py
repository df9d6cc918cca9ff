"""``run_study``: data → rationales → train each arm → self-consistency eval → analysis → report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from raftlab.storage import atomic_write_text, write_json
from raftlab import layout
from raftlab.study.cache import OnChange, StageRunner
from raftlab.study.config import StudyConfig, check_runnable, load_config
from raftlab.study.stages import StudySteps, plan
from raftlab.study.work.outputs import ReportOutput


@dataclass
class StudyResult:
    run_dir: Path
    report: Path | None
    executed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)


def run_study(config: StudyConfig | str | Path | dict | None, run_dir: str | Path, *,
              steps: StudySteps | None = None, on_change: OnChange = "error") -> StudyResult:
    """Run (or resume) a study in ``run_dir``: every stage of :func:`raftlab.study.stages.plan`, each cached
    there (see :mod:`raftlab.study.cache`). Progress is logged (``raftlab.study``). One process at a time may
    run a study in a folder (another gets :class:`raftlab.storage.InUse`)."""
    cfg = config if isinstance(config, StudyConfig) else load_config(config)
    if steps is None:  # the real steps load tasks by name: check them before the run directory exists
        check_runnable(cfg)
    steps = steps or StudySteps.real()
    run_dir = Path(run_dir)
    runner = StageRunner(run_dir, on_change=on_change)
    runner.lock()
    try:
        return _run(cfg, steps, runner)
    finally:
        runner.unlock()


def _run(cfg: StudyConfig, steps: StudySteps, runner: StageRunner) -> StudyResult:
    run_dir = runner.run_dir
    config_file = run_dir / layout.CONFIG_FILE  # the config of the finished run (written at the end)
    config_text = yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
    if not config_file.exists():
        atomic_write_text(config_file, config_text)
    stages = plan(cfg, steps, run_dir)
    runner.total = len(stages)
    outputs: dict[str, dict[str, Any]] = {}
    from raftlab.study.executor import effective_workers

    isolate = cfg.executor.isolate and steps.isolate
    if cfg.executor.kind == "local" and (effective_workers(cfg.executor) == 1 or not isolate):
        from raftlab.study.isolation import run_stage_in_child

        execute = run_stage_in_child if isolate else None  # not isolated: every stage in this process
        for stage in stages:
            given = {dep: {**outputs[dep], "_stage_dir": str(runner.stage_dir(dep))} for dep in stage.deps}
            outputs[stage.name] = runner.run(stage.name, stage.inputs, lambda d, s=stage, g=given: s.work(g, d),
                                             stage.deps, execute=execute, key=stage.key, dep_keys=stage.dep_keys)
    else:
        from raftlab.study.executor import run_dispatched

        run_dispatched(stages, runner, cfg.executor, outputs)
    atomic_write_text(config_file, config_text)
    html = ReportOutput.of({**outputs[layout.REPORT], "_stage_dir": str(runner.stage_dir(layout.REPORT))}).html_path
    result = StudyResult(run_dir=run_dir, report=html,
                         executed=list(runner.executed), skipped=list(runner.skipped), outputs=outputs)
    write_json(run_dir / layout.RESULT_FILE,
               {"report": str(html) if html else None, "executed": result.executed, "skipped": result.skipped})
    return result


def plan_study(config: StudyConfig | str | Path | dict | None, run_dir: str | Path) -> list[dict[str, Any]]:
    """Every stage of the study with its key and what a run would do with it (``done``, ``would run``,
    ``would resume``, ``changed`` with the inputs that changed), without running anything or creating
    ``run_dir``."""
    cfg = config if isinstance(config, StudyConfig) else load_config(config)
    check_runnable(cfg)
    runner = StageRunner(run_dir)
    stages = plan(cfg, StudySteps.real(), Path(run_dir))
    return [{"stage": s.name, "kind": s.kind, "key": s.key, "deps": list(s.deps),
             **runner.status(s.name, s.key, s.inputs, s.dep_keys)} for s in stages]
