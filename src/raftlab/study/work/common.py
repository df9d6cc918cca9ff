"""What several stages' work shares: Example files, the kept rationales of a stage, the generation budget of an
eval, the study's self-consistency eval of one model, and tasks prompted with in-context demonstrations."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from raftlab import layout
from raftlab.schema import Example
from raftlab.storage import read_jsonl, write_jsonl
from raftlab.study.config import StudyConfig
from raftlab.study.work.outputs import DataOutput, Given, RationaleFile


def write_examples(examples: list[Example], path: Path) -> None:
    write_jsonl(examples, path)


def read_examples(path: Path) -> list[Example]:
    return [Example.model_validate(row) for row in read_jsonl(path)]


def kept_examples(source: Given | RationaleFile) -> list[Example]:
    """The examples with a rationale in a stage's rationale file (the teacher's kept ones, or a subset of them)."""
    return [e for e in read_examples(RationaleFile.of(source).rationales_path) if e.rationale]


def arm_budget(cfg: StudyConfig, task: Any, rationales: Given | RationaleFile, objective: str, prompt_mode: str,
               out: Path) -> int:
    """The eval's ``max_new_tokens``: ``eval.max_new_tokens`` if set, else what the arm's training targets need
    (:func:`raftlab.training.budget.generation_budget` over the kept rationales, student tokenizer); see
    :func:`raftlab.training.budget.settle_budget`."""
    from raftlab.models import load_tokenizer
    from raftlab.training.budget import context_length, generation_budget, settle_budget

    tok = load_tokenizer(cfg.model)
    budget = generation_budget(kept_examples(rationales), task, tok, objective, prompt_mode, context_length(tok))
    return settle_budget(cfg.eval.max_new_tokens, budget, task.name, out)




def self_consistency(cfg: StudyConfig, backend_spec: str, task: Any, data: Given | DataOutput, prompt_mode: str,
                     out: Path, max_new_tokens: int, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The study's eval settings applied to one model on the test subset (records resume after a crash)."""
    from raftlab.backends import get_backend, parse_spec
    from raftlab.inference import QUESTIONS_PER_CALL, evaluate as run_eval

    e, device = cfg.eval, cfg.device
    kwargs: dict[str, Any] = {}
    if parse_spec(backend_spec)[0] == "hf":  # a batch of questions, each with its samples, per forward
        kwargs = {"batch_size": e.batch_size, **({"device": device} if device else {})}
    options = cfg.eval.backend_options if options is None else options
    backend, questions = get_backend(backend_spec, options, **kwargs), read_examples(DataOutput.of(data).test_path)
    metrics = run_eval(backend, task, questions, mode=e.mode, k=e.k, temperature=e.temperature,
                       max_new_tokens=max_new_tokens, seed=cfg.seed,
                       batch_size=max(e.batch_size, QUESTIONS_PER_CALL),
                       prompt_mode=prompt_mode, out_dir=out, progress=True)
    if e.direct_prob and prompt_mode == "direct" and getattr(task, "answer_type", None) == "choice":
        # the label-only arms' token-probability confidence, beside the vote share (analysis: TaskRow.token_prob)
        metrics["direct_prob"] = run_eval(backend, task, questions, mode="direct_prob", seed=cfg.seed,
                                          batch_size=e.batch_size, out_dir=out / layout.DIRECT_PROB, progress=True)
    return metrics


class PromptedTask:
    """A task whose evaluation prompt is ``prompt(example, mode)`` (demonstrations before the question);
    everything else is the task's own."""

    def __init__(self, task: Any, prompt: Callable[[Example, str], str]) -> None:
        self._task, self._prompt = task, prompt

    def prompt(self, example: Example, mode: str = "cot") -> str:
        return self._prompt(example, mode)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._task, name)


def jsonable(obj: Any) -> Any:
    """Pydantic models / dataclasses / plain values -> JSON-ready data."""
    import dataclasses

    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return json.loads(json.dumps(dataclasses.asdict(obj), default=str))
    return json.loads(json.dumps(obj, default=str))
