"""Task-difficulty metrics (the paper's predictors of the RAFT gain) and their fits to ΔAcc/ΔECE."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from raftlab.analysis.directions import hypothesised_direction
from raftlab.analysis.models import OLSFit, TaskRow
from raftlab.analysis.ols import fit_ols
from raftlab.schema import Example

#: Difficulty metric keys used in analysis results and by ``predict_gain``. The first three are the paper's
#: (section 4.1); the last two are raftlab's cheaper variants, named as such.
DIFFICULTY_METRICS = {
    "reference_length": "paper metric 1: mean length (words) of a reference model's zero-shot CoT rationales, "
                        "10 samples on each of 100 test questions",
    "length": "paper metric 2 (Eq. 8; the x of Eq. 9): mean length (words) of the rationales the untrained base "
              "model writes under mix-of-task prompting (3 demonstrations: teacher rationales of 3 other tasks)",
    "acc_ft": "paper metric 3: absolute accuracy of label-only finetuning (FT)",
    "teacher_rationale_length": "raftlab variant: mean length (student tokens) of the teacher's kept training "
                                "rationales",
    "mean_of_task_accuracy": "raftlab variant: accuracy of the untrained student under mix-of-task prompting",
}


def generated_rationale_length(samples: Iterable[str], tokenizer: Any = None) -> float:
    """Mean length of generated rationales (the model's text before its answer sentence): whitespace words, or
    tokens of ``tokenizer``. Empty samples count as length 0 (a model that writes no rationale)."""
    from raftlab.tasks.answers import strip_answer_sentence

    lengths = [_count_tokens(strip_answer_sentence(s), tokenizer) if s.strip() else 0 for s in samples]
    if not lengths:
        raise ValueError("generated_rationale_length: no samples given")
    return sum(lengths) / len(lengths)


def _count_tokens(text: str, tokenizer: Any) -> int:
    if tokenizer is None:
        return len(text.split())
    if hasattr(tokenizer, "encode"):
        try:
            return len(tokenizer.encode(text, add_special_tokens=False))
        except TypeError:  # tokenizers without that keyword
            return len(tokenizer.encode(text))
    if callable(tokenizer):
        return len(tokenizer(text))
    raise TypeError(f"tokenizer must have .encode() or be callable, got {type(tokenizer).__name__}")


def mean_rationale_length(rationales: Iterable[str | None], tokenizer: Any = None) -> float:
    """Mean length of the rationales: tokens of ``tokenizer`` (HF tokenizer or callable), else whitespace words.

    Missing (None/empty) rationales are skipped; at least one is required.
    """
    lengths = [_count_tokens(r, tokenizer) for r in rationales if r and r.strip()]
    if not lengths:
        raise ValueError("mean_rationale_length: no (non-empty) rationales given")
    return sum(lengths) / len(lengths)


def rationale_length_by_task(rationales_by_task: Mapping[str, Iterable[str | None]], tokenizer: Any = None,
                             key: str = "teacher_rationale_length") -> dict[str, dict[str, float]]:
    """``{task: {key: mean rationale length}}``, ready for ``analyze_study(difficulty=...)``."""
    return {task: {key: mean_rationale_length(rats, tokenizer)} for task, rats in rationales_by_task.items()}


def _demonstration(example: Example, mode: str, with_rationale: bool) -> str:
    from raftlab.tasks import task_for

    task = task_for(example)
    rationale = example.rationale if (with_rationale and mode == "cot") else None
    return task.prompt(example, mode) + task.target(example, rationale)


def mean_of_task_demonstrations(task_name: str, examples_by_task: Mapping[str, Sequence[Example]], k: int = 3,
                                seed: int = 0) -> list[Example]:
    """``k`` demonstrations, one from each of ``k`` tasks other than ``task_name`` (seeded choice)."""
    others = sorted(name for name, exs in examples_by_task.items() if name != task_name and exs)
    if len(others) < k:
        raise ValueError(f"mean-of-task prompting for {task_name!r} needs examples of {k} other tasks, "
                         f"got {len(others)}: {others}")
    rng = random.Random(f"{seed}:{task_name}")
    chosen = rng.sample(others, k)
    return [rng.choice(list(examples_by_task[name])) for name in chosen]


def mean_of_task_prompt(task_name: str, examples_by_task: Mapping[str, Sequence[Example]], k: int = 3,
                        seed: int = 0, example: Example | None = None, mode: str = "cot",
                        with_rationales: bool = True) -> str:
    """The mean-of-task in-context prompt: ``k`` demonstrations from ``k`` OTHER tasks, then the question.

    As in the paper, the demonstrations come from three different tasks than the evaluated
    one, so the prompt shows the answer format without task-specific hints; the accuracy a
    model reaches with it measures how hard the task is on its own. Each demonstration is the
    task's evaluation prompt followed by its training target (with the example's rationale
    in ``"cot"`` mode when ``with_rationales``). With ``example`` the evaluation prompt of that
    question is appended (the text a model continues); otherwise only the demonstrations are
    returned. The choice of demonstrations depends only on ``seed`` and ``task_name``.
    """
    from raftlab.tasks import task_for

    demos = mean_of_task_demonstrations(task_name, examples_by_task, k, seed)
    parts = [_demonstration(d, mode, with_rationales) for d in demos]
    if example is not None:
        parts.append(task_for(example).prompt(example, mode))
    return "\n\n\n".join(parts)


def mean_of_task_prompts(task_name: str, examples_by_task: Mapping[str, Sequence[Example]],
                         eval_examples: Sequence[Example], k: int = 3, seed: int = 0, mode: str = "cot",
                         with_rationales: bool = True) -> list[str]:
    """Mean-of-task prompts for each of ``eval_examples`` (same demonstrations for all, chosen by ``seed``)."""
    from raftlab.tasks import task_for

    demos = mean_of_task_demonstrations(task_name, examples_by_task, k, seed)
    prefix = "\n\n\n".join(_demonstration(d, mode, with_rationales) for d in demos)
    return [prefix + "\n\n\n" + task_for(ex).prompt(ex, mode) for ex in eval_examples]


def teacher_demonstrations(source: str | Path) -> dict[str, list[Example]]:
    """``{task: examples with a kept teacher rationale}``: Eq. 8's demonstration pool.

    ``source`` is a study run directory (``RUN/rationales/<task>/rationales.jsonl``) or a folder of
    ``<task>/rationales.jsonl`` files (e.g. ``raftlab rationales generate`` outputs). Examples are grouped by
    their ``task`` field; those without a rationale are skipped.
    """
    from raftlab import layout
    from raftlab.storage import read_jsonl

    root = Path(source)
    in_run = root / Path(layout.rationales("*")).parent
    stores = in_run if in_run.is_dir() else root
    files = sorted(stores.glob("*/rationales.jsonl"))
    if not files:
        raise FileNotFoundError(f"{root}: no <task>/rationales.jsonl (a study run directory or a folder of "
                                f"rationale stores)")
    pool: dict[str, list[Example]] = {}
    for path in files:
        for row in read_jsonl(path):
            example = Example.model_validate(row)
            if example.rationale and example.rationale.strip():
                pool.setdefault(example.task, []).append(example)
    return pool


def base_model_rationale_length(backend: Any, task: Any, examples: Sequence[Example],
                                demonstrations: Mapping[str, Sequence[Example]], k: int = 10,
                                temperature: float = 0.8, max_new_tokens: int = 256, seed: int = 0) -> float:
    """Paper difficulty metric 2 (Eq. 8), the ``Len`` of Eq. 9, in whitespace words: the mean length of the
    rationales an untrained base model writes for ``examples`` under mix-of-task prompting, ``k`` samples each.

    ``demonstrations`` is the pool of the 3 demonstrations from 3 other tasks: as in Eq. 8, the teacher's kept
    rationales of the study's tasks (:func:`teacher_demonstrations`).
    """
    from raftlab.backends.base import SamplingParams

    prompts = mean_of_task_prompts(task.name, demonstrations, examples, seed=seed)
    rows = backend.generate(prompts, SamplingParams(n=k, temperature=temperature, max_new_tokens=max_new_tokens,
                                                    stop=("\n\n\n",), seed=seed))
    return generated_rationale_length([g.text for row in rows for g in row])


def difficulty_fits(rows: Sequence[TaskRow], metrics: Sequence[str] | None = None,
                    targets: Sequence[str] = ("delta_acc", "delta_ece")) -> tuple[list[OLSFit], list[str]]:
    """OLS fits of ΔAcc and ΔECE on each difficulty metric over tasks; returns (fits, notes on skipped fits).
    Each fit's one-tailed p tests the sign the paper hypothesises for its metric (analysis.directions)."""
    names = list(metrics) if metrics is not None else sorted({m for r in rows for m in r.difficulty})
    fits, notes = [], []
    for metric in names:
        usable = [r for r in rows if metric in r.difficulty and r.delta is not None]
        for target in targets:
            xs = [r.difficulty[metric] for r in usable]
            ys = [getattr(r.delta, target).value for r in usable]
            try:
                fits.append(fit_ols(xs, ys, x_name=metric, y_name=target, labels=[r.task for r in usable],
                                    direction=hypothesised_direction(metric)))
            except ValueError as exc:
                notes.append(f"no fit of {target} on {metric}: {exc}")
    return fits, notes
