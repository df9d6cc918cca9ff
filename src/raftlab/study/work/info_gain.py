"""The ``info_gain`` stage: the mean probability of the gold answer along the kept teacher rationales, under
each trained arm's model."""

from __future__ import annotations

from pathlib import Path

from raftlab.storage import write_json
from raftlab.study.config import StudyConfig, TaskSpec
from raftlab.study.work.common import kept_examples
from raftlab.study.work.outputs import Given, InfoGainOutput, TrainOutput


def info_gain(cfg: StudyConfig, spec: TaskSpec, train_outs: dict[str, Given], rat_out: Given,
              out: Path) -> InfoGainOutput:
    """Mean P(gold answer) along kept teacher rationales under each arm's model: ``sampled`` (the paper's
    Appendix A.1: token prefixes, ``info_gain_samples`` answers each) or ``scored`` (raftlab's sentence-prefix,
    teacher-forced variant)."""
    from raftlab.analysis import average_curves, example_information_gain
    from raftlab.analysis.info_gain import sampled_answer_probabilities
    from raftlab.backends import get_backend
    from raftlab.tasks import get_task

    task = get_task(spec.name)
    examples = kept_examples(rat_out)[: cfg.info_gain_examples]
    curves: dict[str, list[float]] = {}
    for arm, train_out in train_outs.items():
        backend = get_backend(f"hf:{TrainOutput.of(train_out).model_path}")
        if cfg.info_gain_method == "sampled":
            probs = [sampled_answer_probabilities(backend, task, e, n=cfg.info_gain_samples,
                                                  stride=cfg.info_gain_stride, temperature=cfg.eval.temperature,
                                                  seed=cfg.seed) for e in examples]
        else:
            probs = [example_information_gain(backend, task, e).prob for e in examples]
        if probs:
            curves[arm] = average_curves(probs).tolist()
    write_json(out / "curves.json", {"task": spec.name, "n": len(examples), "method": cfg.info_gain_method,
                                     "step": "tokens" if cfg.info_gain_method == "sampled" else "sentences",
                                     "curves": curves})
    return InfoGainOutput("curves.json", len(examples), folder=out)
