"""Task-difficulty metrics (the paper's predictors of the RAFT gain) and their fits to ΔAcc/ΔECE."""

from __future__ import annotations

import random
from typing import Any, Iterable, Mapping, Sequence

from raftlab.analysis.models import OLSFit, TaskRow
from raftlab.analysis.ols import fit_ols
from raftlab.schema import Example

#: Difficulty metric keys used in analysis results and by ``predict_gain``. The first three are the paper's
#: (section 4.1); the last two are raftlab's cheaper variants, named as such.
DIFFICULTY_METRICS = {
    "reference_length": "paper metric 1: mean length (words) of a reference model's zero-shot CoT rationales, "
                        "10 samples on each of 100 test questions",
    "length": "paper metric 2 (Eq. 8; the x of Eq. 9): mean length (words) of the rationales the untrained base "
              "model writes under mix-of-task 3-demonstration prompting",
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


#: Tasks whose rationales raftlab has offline (oracle rationales of the synthetic tasks, human rationales of the
#: packaged GSM8K and CREAK samples): the default demonstration pool of mix-of-task prompting.
OFFLINE_DEMONSTRATION_TASKS = ("synth_arith", "synth_coinflip", "synth_topic", "gsm8k", "creak")


def offline_demonstrations(per_task: int = 8, seed: int = 0) -> dict[str, list[Example]]:
    """``{task: examples with rationales}`` for :data:`OFFLINE_DEMONSTRATION_TASKS` (no network, no teacher)."""
    from raftlab.rationales.oracle import oracle_rationale
    from raftlab.tasks import get_task

    pool = {}
    for name in OFFLINE_DEMONSTRATION_TASKS:
        task = get_task(name)
        data_dir = "packaged" if not task.data.synthetic else None
        examples = task.load("train", data_dir=data_dir, limit=per_task, seed=seed)
        with_rationale = [e.model_copy(update={"rationale": r}) for e in examples if (r := oracle_rationale(e))]
        if with_rationale:
            pool[name] = with_rationale
    return pool


def base_model_rationale_length(backend: Any, task: Any, examples: Sequence[Example],
                                demonstrations: Mapping[str, Sequence[Example]] | None = None, k: int = 10,
                                temperature: float = 0.8, max_new_tokens: int = 256, seed: int = 0) -> float:
    """Paper difficulty metric 2 (Eq. 8), the ``Len`` of Eq. 9: the mean length in words of the rationales an
    untrained base model writes for ``examples`` under mix-of-task prompting (3 demonstrations from 3 other
    tasks; default pool: :func:`offline_demonstrations`), ``k`` samples each."""
    from raftlab.backends.base import SamplingParams

    pool = dict(demonstrations) if demonstrations is not None else offline_demonstrations(seed=seed)
    prompts = mean_of_task_prompts(task.name, pool, examples, seed=seed)
    rows = backend.generate(prompts, SamplingParams(n=k, temperature=temperature, max_new_tokens=max_new_tokens,
                                                    stop=("\n\n\n",), seed=seed))
    return generated_rationale_length([g.text for row in rows for g in row])


def difficulty_fits(rows: Sequence[TaskRow], metrics: Sequence[str] | None = None,
                    targets: Sequence[str] = ("delta_acc", "delta_ece")) -> tuple[list[OLSFit], list[str]]:
    """OLS fits of ΔAcc and ΔECE on each difficulty metric over tasks; returns (fits, notes on skipped fits)."""
    names = list(metrics) if metrics is not None else sorted({m for r in rows for m in r.difficulty})
    fits, notes = [], []
    for metric in names:
        usable = [r for r in rows if metric in r.difficulty and r.delta is not None]
        for target in targets:
            xs = [r.difficulty[metric] for r in usable]
            ys = [getattr(r.delta, target).value for r in usable]
            try:
                fits.append(fit_ols(xs, ys, x_name=metric, y_name=target, labels=[r.task for r in usable]))
            except ValueError as exc:
                notes.append(f"no fit of {target} on {metric}: {exc}")
    return fits, notes
