"""The ``reference`` stage (paper difficulty metric 1): a reference model's zero-shot CoT samples on the first
test questions; the analysis reads their mean length."""

from __future__ import annotations

from pathlib import Path

from raftlab.study.config import StudyConfig, TaskSpec
from raftlab.study.work.common import read_examples
from raftlab.study.work.outputs import DataOutput, Given, ReferenceOutput


def reference(cfg: StudyConfig, spec: TaskSpec, data_out: Given, out: Path) -> ReferenceOutput:
    """Paper difficulty metric 1: ``reference.k`` zero-shot CoT samples of the reference model on the first
    ``reference.questions`` test questions (their mean length is computed by the analysis)."""
    from raftlab.backends import get_backend
    from raftlab.inference import evaluate as run_eval
    from raftlab.tasks import get_task

    r = cfg.reference
    assert r is not None
    questions = read_examples(DataOutput.of(data_out).test_path)[: r.questions]
    metrics = run_eval(get_backend(r.backend), get_task(spec.name), questions, mode="sc", k=r.k,
                       temperature=r.temperature, max_new_tokens=r.max_new_tokens, seed=cfg.seed,
                       batch_size=cfg.eval.batch_size, prompt_mode="cot", out_dir=out, progress=True)
    return ReferenceOutput(len(questions), float(metrics["accuracy"]), folder=out)
