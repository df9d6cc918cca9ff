"""The study's ``judge`` stage: the paper's App. C check of a task's kept rationales by an LLM judge.

The verdicts go into the task's rationale store (:func:`raftlab.rationales.judge_rationales`, resumable), the
counts into ``RUN/judge/<task>/judge.json`` for the report. Which judge: ``judge.backend``, else the teacher's
own backend (see :meth:`raftlab.study.config.StudyConfig.judge_backend`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raftlab import layout
from raftlab.storage import write_json
from raftlab.rationales.judge import judge_backend
from raftlab.study.config import StudyConfig, TaskSpec
from raftlab.study.work.outputs import Given, JudgeOutput, RationalesOutput


def judge_spec(cfg: StudyConfig) -> tuple[str, dict[str, Any]]:
    """``(backend spec, engine options)`` of the judge: the named judge's, else the teacher's."""
    if cfg.judge.backend is not None:
        return cfg.judge.backend, cfg.judge.backend_options
    return cfg.teacher.backend, cfg.teacher.backend_options


def judge(cfg: StudyConfig, spec: TaskSpec, rat_out: Given, out: Path) -> JudgeOutput:
    """Judge a seeded sample of ``judge.sample`` of the kept rationales the task trains on (the first
    ``kept``, those exported); write the counts and the sample's verdicts to ``judge.json``. Verdicts an earlier,
    differently configured judge left in the store are forgotten first."""
    from raftlab.rationales import RationaleStore, judge_rationales
    from raftlab.rationales.judge import judge_settings

    backend_spec, options = judge_spec(cfg)
    settings = judge_settings(backend_spec, options, cfg.judge.max_new_tokens)
    backend = judge_backend(backend_spec, options)
    rats = RationalesOutput.of(rat_out)
    trained = rats.kept  # the first kept rationales, those exported for training
    with RationaleStore(rats.path(layout.RATIONALE_STORE)) as store:
        forgotten = store.bind_judge(settings)
        result = judge_rationales(backend, store, sample=cfg.judge.sample, seed=cfg.seed,
                                  max_new_tokens=cfg.judge.max_new_tokens, progress=True, limit=trained)
    verdicts = result.pop("verdicts")
    if result["pending"]:
        raise RuntimeError(f"judge {settings['backend']!r}: {result['pending']} rationales of {spec.name!r} are "
                           "pending because its requests kept failing; rerun the study to judge them")
    write_json(out / layout.JUDGE_FILE, {"task": spec.name, **settings, "sample": cfg.judge.sample, **result,
                                         "forgotten": forgotten, "verdicts": verdicts})
    return JudgeOutput(layout.JUDGE_FILE, **{k: result[k] for k in ("helpful", "unhelpful", "unknown", "judged")},
                       folder=out)
