"""Dispatch a study's stages to several workers or a cluster (``executor:`` in the config).

Every stage whose dependencies are done is submitted, up to ``workers`` at a time; the main process keeps the
manifest (:class:`~raftlab.study.cache.StageRunner`), so caching, skipping and resuming are exactly those of a
run in one process. Where a stage runs:

* local workers on a host without GPUs: children of raftlab's fork server
  (:class:`raftlab.study.isolation.ForkExecutor`), each pinned to its own share of the CPU cores with as many torch
  threads, so that workers do not oversubscribe the cores; their log records come through this process;
* local workers on a GPU host: submitit's local executor, one GPU per running stage;
* ``slurm``: one submitit job per stage.

A submitit job's stdout/stderr are kept under ``RUN/executor/``, and a failed stage names that log.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from raftlab.study.cache import StageFailed, StageRunner, run_stage_work

logger = logging.getLogger(__name__)
LOG_DIR = "executor"


def stage_job(name: str, work: Any, given: dict[str, Any], folder: str, cores: tuple[int, ...] | None = None
              ) -> tuple[dict[str, Any], float, int]:
    """Runs in the worker (its own process): the stage's work, its seconds and peak memory. With ``cores`` the
    worker runs on those CPU cores only, with as many torch threads."""
    if cores:
        import torch

        os.sched_setaffinity(0, cores)
        torch.set_num_threads(len(cores))
    outputs, seconds, peak, _ = run_stage_work(name, lambda d: work(given, d), Path(folder))
    return outputs, seconds, peak


def core_groups(workers: int) -> list[tuple[int, ...]]:
    """This process's CPU cores split into ``workers`` groups of adjacent cores (the first groups one core larger
    when they do not divide evenly); none when there are fewer cores than workers (then workers share them all)."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if workers < 2 or len(cores) < workers:
        return []
    size, extra = divmod(len(cores), workers)
    groups, start = [], 0
    for i in range(workers):
        end = start + size + (i < extra)
        groups.append(tuple(cores[start:end]))
        start = end
    return groups


def make_executor(config: Any, run_dir: Path, gpus: bool = False) -> Any:
    """Local workers on a host without GPUs: children of raftlab's fork server (no imports per stage, logs through
    this process); otherwise submitit's local or SLURM executor."""
    if config.kind == "local" and not gpus:
        from raftlab.study.isolation import ForkExecutor

        return ForkExecutor()
    try:
        import submitit
    except ImportError as exc:
        raise ImportError("executor workers > 1 or kind 'slurm' need submitit: pip install 'raftlab[cluster]'") from exc
    folder = run_dir / LOG_DIR / "%j"
    if config.kind == "slurm":
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
        executor.update_parameters(**config.slurm)
        return executor
    executor = submitit.LocalExecutor(folder=folder)
    executor.update_parameters(timeout_min=24 * 60)
    return executor


def local_devices(config: Any) -> list[int]:
    """GPUs the local workers are pinned to, one per worker: ``config.devices`` or every visible CUDA device
    (none on a CPU host, and none for SLURM, which assigns GPUs itself)."""
    if config.kind != "local":
        return []
    if config.devices is not None:
        return list(config.devices)
    import torch

    return list(range(torch.cuda.device_count()))


def longest_chains(stages: list[Any]) -> dict[str, float]:
    """Each stage's cost plus that of the costliest chain of stages waiting on it (``stages`` in plan order,
    dependencies first). Ready stages start in decreasing order of it, so that the long chains (a RAFT training
    and its CoT evaluation) start first and the short stages fill the workers around them, instead of the last
    task's long chain running alone at the end."""
    dependents: dict[str, list[str]] = {s.name: [] for s in stages}
    for stage in stages:
        for dep in stage.deps:
            dependents.setdefault(dep, []).append(stage.name)
    chain: dict[str, float] = {}
    for stage in reversed(stages):
        chain[stage.name] = getattr(stage, "cost", 1.0) + max((chain[d] for d in dependents[stage.name]), default=0.0)
    return chain


def effective_workers(config: Any) -> int:
    """How many stages can usefully run at once: ``workers``, but no more than the GPUs local workers are pinned
    to on a GPU host (and one where submitit, which runs them, is not installed), or the CPU cores on a CPU host
    (more workers than cores would only share them; one where the cores cannot be pinned, e.g. on macOS)."""
    if config.kind != "local" or config.workers == 1:
        return config.workers
    devices = local_devices(config)
    if devices:
        import importlib.util

        workers = min(config.workers, len(devices))
        if workers > 1 and importlib.util.find_spec("submitit") is None:
            logger.info("stages run one at a time: %d on %d GPUs needs submitit (pip install 'raftlab[cluster]')",
                        workers, len(devices))
            return 1
        return workers
    if not hasattr(os, "sched_getaffinity"):
        return 1
    return min(config.workers, len(os.sched_getaffinity(0)))


def run_dispatched(stages: list[Any], runner: StageRunner, config: Any, outputs: dict[str, dict[str, Any]],
                   poll: float = 0.2, executor: Any = None) -> None:
    """Run ``stages`` (in plan order, dependencies first) on :func:`effective_workers` workers, the longest chains
    first (:func:`longest_chains`); fills ``outputs``.

    Local workers on a machine with GPUs are pinned: each running stage sees one GPU of its own
    (``CUDA_VISIBLE_DEVICES``), so at most one stage per GPU runs at a time."""
    devices = local_devices(config)
    executor = executor or make_executor(config, runner.run_dir, gpus=bool(devices))
    free = list(devices)
    held: dict[str, int] = {}
    workers = effective_workers(config)
    groups = [] if devices or config.kind != "local" else core_groups(workers)
    free_cores = list(range(len(groups)))  # indices into groups
    held_cores: dict[str, int] = {}
    chain = longest_chains(stages)
    pending = sorted(stages, key=lambda s: -chain[s.name])  # stable: plan order among equals
    running: dict[str, Any] = {}
    kinds: dict[str, str] = {}  # running stage -> its kind
    try:
        while pending or running:
            for stage in list(pending):
                if len(running) >= workers:
                    break
                if not all(dep in outputs for dep in stage.deps):
                    continue
                if stage.kind in config.serial_kinds and stage.kind in kinds.values():
                    continue  # one of its kind is running
                pending.remove(stage)
                skipped, found = runner.begin(stage.name, stage.inputs, stage.deps, stage.key, stage.dep_keys)
                if skipped:
                    outputs[stage.name] = found
                    continue
                given = {dep: {**outputs[dep], "_stage_dir": str(runner.stage_dir(dep))} for dep in stage.deps}
                cores = None
                if devices:
                    held[stage.name] = free.pop(0)
                    executor.update_parameters(gpus_per_node=1, visible_gpus=(held[stage.name],))
                elif groups:
                    slot = held_cores[stage.name] = free_cores.pop(0)
                    cores = groups[slot]
                    executor.update_parameters(env={"TQDM_POSITION": str(slot)})  # one progress line per worker
                kinds[stage.name] = stage.kind
                running[stage.name] = job = executor.submit(stage_job, stage.name, stage.work, given, str(found),
                                                            cores)
                if stage.name in held:
                    job.raftlab_gpu = held[stage.name]
                job.raftlab_cores = cores
            finished = [name for name, job in running.items() if job.done()]
            if not finished:
                if not running and pending:
                    missing = sorted({d for s in pending for d in s.deps if d not in outputs})
                    raise RuntimeError(f"stages wait for stages that never ran: {', '.join(missing)}")
                time.sleep(poll)
                continue
            for name in finished:
                job = running.pop(name)
                kinds.pop(name, None)
                if name in held:
                    free.append(held.pop(name))
                if name in held_cores:
                    free_cores.append(held_cores.pop(name))
                try:
                    result, seconds, peak = job.result()
                except StageFailed as exc:  # a forked child's failure already names the stage and its partial work
                    hint = (" Several stages ran at once: `executor: {workers: 1}` runs one at a time, in less "
                            "memory, or `serial_kinds: [train]` never runs two trainings at once."
                            if workers > 1 and "killed by signal" in str(exc) else "")
                    raise StageFailed(f"{exc} (worker job {job.job_id}){hint}") from exc
                except Exception as exc:  # noqa: BLE001 - the worker's error, with where its log is
                    log = getattr(getattr(job, "paths", None), "stderr", None)
                    where_log = f"; its log: {log}" if log else ""
                    raise StageFailed(f"stage '{name}' failed in worker job {job.job_id}: {_last_line(exc)}"
                                      f"{where_log}; its partial work is in {runner.stage_dir(name)}. Fix the cause "
                                      "and rerun the same command to resume.") from exc
                where = (f"job {job.job_id}" + (f", GPU {held_gpu}" if (held_gpu := _gpu_of(job)) is not None else "")
                         + (f", cores {_cores_text(job.raftlab_cores)}" if getattr(job, "raftlab_cores", None) else ""))
                outputs[name] = runner.finish(name, result, seconds, peak, where=where)
    finally:
        for job in running.values():  # another stage failed: stop the rest (their partial work resumes)
            job.cancel(check=False)


def _cores_text(cores: tuple[int, ...]) -> str:
    return f"{cores[0]}-{cores[-1]}" if len(cores) > 1 else str(cores[0])


def _gpu_of(job: Any) -> int | None:
    return getattr(job, "raftlab_gpu", None)


def _last_line(exc: BaseException) -> str:
    """The worker's own error line out of submitit's failure message (which ends with log paths)."""
    import re

    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"[\w.]*(?:Error|Failed|Exception|Interrupt)\b.*?: ", line)]
    if errors:
        return errors[-1].split("StageFailed: ", 1)[-1]
    return lines[0] if lines else type(exc).__name__
