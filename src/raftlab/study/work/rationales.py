"""The ``rationales`` stage: teacher rationales for the training examples, gold-filtered with retries into a
resumable store, the kept ones exported for training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raftlab import layout
from raftlab.schema import Example
from raftlab.study.config import StudyConfig, TaskSpec
from raftlab.study.work.common import jsonable, read_examples
from raftlab.study.work.outputs import DataOutput, Given, RationalesOutput


def teacher_backend(cfg: StudyConfig, task: Any, examples: list[Example]) -> Any:
    """The study's teacher: the deterministic oracle, or a backend sized for batched attempts."""
    if cfg.teacher.backend == "oracle":
        from raftlab.rationales.oracle import OracleTeacher

        return OracleTeacher(task, examples)
    from raftlab.rationales import teacher_backend as build

    t = cfg.teacher
    return build(t.backend, t.backend_options, t.batch_size)


def samples_per_prompt(cfg: StudyConfig) -> int:
    from raftlab.rationales import default_samples_per_prompt

    return cfg.teacher.samples_per_prompt or default_samples_per_prompt(cfg.teacher.backend)


def rationales(cfg: StudyConfig, spec: TaskSpec, data_out: Given, out: Path) -> RationalesOutput:
    """Teacher rationales for the training examples, gold-filtered with retries (resumable store)."""
    from raftlab.rationales import export_jsonl, generate_rationales
    from raftlab.tasks import get_task

    task = get_task(spec.name)
    examples = read_examples(DataOutput.of(data_out).train_path)
    store = out / layout.RATIONALE_STORE
    t = cfg.teacher
    in_flight = ({"concurrency": t.batch_size, "samples_per_prompt": samples_per_prompt(cfg)}
                 if t.backend != "oracle" else {})
    target = t.kept_target or len(examples)
    stats = generate_rationales(teacher_backend(cfg, task, examples), task, examples, store,
                                n=target, traversals=t.traversals,
                                max_retries=t.max_retries, style=t.style, length=t.length,
                                temperature=t.temperature, max_new_tokens=t.max_new_tokens, seed=cfg.seed,
                                **in_flight)
    kept = export_jsonl(store, out / layout.RATIONALES_FILE, limit=target)
    if stats.get("pending"):
        raise RuntimeError(f"teacher {t.backend!r}: {stats['pending']} examples of {spec.name!r} are pending because "
                           f"their requests kept failing (last error: {stats.get('last_request_error')})")
    if not kept:
        raise RuntimeError(f"teacher {t.backend!r} kept no rationale for task {spec.name!r} "
                           f"(see {store}); the FT/RAFT comparison needs at least one")
    return RationalesOutput(layout.RATIONALES_FILE, kept=kept, stats=jsonable(stats), folder=out)
