"""Load training examples (JSONL / rationale runs), build multi-task mixtures, tokenize into a dataset."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from raftlab.schema import Example
from raftlab.rationales.blank import blank_length, is_blank
from raftlab.training.features import RATIONALE_OBJECTIVES, build_features


def resolve_data_file(path: str | Path) -> Path:
    """A JSONL file, or a rationale run directory's ``rationales.jsonl``."""
    p = Path(path)
    if p.is_dir():
        p = p / "rationales.jsonl"
    if not p.is_file():
        raise FileNotFoundError(f"training data {path} not found (a JSONL of Examples or a rationale run dir)")
    return p


def load_examples(paths: Sequence[str | Path], objective: str,
                  examples: Sequence[Example] = ()) -> list[Example]:
    """All examples of ``paths`` plus ``examples``; rationale objectives need a rationale on every one
    (the error names the file and line, or the index and id of a given Example)."""
    from raftlab.tasks import load_jsonl

    out: list[Example] = []
    if objective in RATIONALE_OBJECTIVES:
        for i, ex in enumerate(examples):
            if not (ex.rationale and ex.rationale.strip()):
                raise ValueError(f"data[{i}] (id {ex.id!r}): field 'rationale' is missing or empty; objective "
                                 f"{objective!r} needs a rationale on every example")
    out.extend(examples)
    for path in paths:
        f = resolve_data_file(path)
        examples = load_jsonl(f)
        if objective in RATIONALE_OBJECTIVES:
            for i, ex in enumerate(examples, 1):
                if not (ex.rationale and ex.rationale.strip()):
                    raise ValueError(f"{f}:{i}: field 'rationale' is missing or empty; objective {objective!r} "
                                     "needs a rationale on every example (or use --objective label)")
        out.extend(examples)
    if not out:
        raise ValueError(f"no training examples in {', '.join(map(str, paths)) or 'the given data'}")
    return out


def build_mixture(examples: Sequence[Example], weights: dict[str, float], size: int | None = None,
                  seed: int = 0) -> list[Example]:
    """Sample a multi-task mixture: task t gets ``size * w_t / sum(w)`` examples (with replacement when that
    exceeds what it has). Tasks with weight 0 or not listed are dropped (polarity mixtures: list only the tasks
    of one polarity)."""
    by_task: dict[str, list[Example]] = defaultdict(list)
    for ex in examples:
        by_task[ex.task].append(ex)
    unknown = sorted(set(weights) - set(by_task))
    if unknown:
        raise ValueError(f"mixture names tasks with no data: {', '.join(unknown)} (have: {', '.join(sorted(by_task))})")
    active = {t: w for t, w in weights.items() if w > 0}
    if not active:
        raise ValueError("mixture weights are all zero")
    total = size or sum(len(by_task[t]) for t in active)
    rng = random.Random(seed)
    out: list[Example] = []
    z = sum(active.values())
    for t, w in sorted(active.items()):
        n = round(total * w / z)
        pool = by_task[t]
        out += rng.sample(pool, n) if n <= len(pool) else [rng.choice(pool) for _ in range(n)]
    rng.shuffle(out)
    return out


def polarity_weights(weights: dict[str, float], polarity: dict[str, int], which: str) -> dict[str, float]:
    """Sampling weights of a polarity mixture: ``which`` = "full" keeps every task, "positive"/"negative" keep
    the tasks whose ``polarity`` (e.g. the sign of RAFT's accuracy gain over FT) is > 0 / < 0."""
    if which == "full":
        return dict(weights)
    if which not in ("positive", "negative"):
        raise ValueError(f"mixture polarity must be full, positive or negative, not {which!r}")
    missing = sorted(set(weights) - set(polarity))
    if missing:
        raise ValueError(f"task_polarity has no sign for: {', '.join(missing)}")
    sign = 1 if which == "positive" else -1
    kept = {t: w for t, w in weights.items() if polarity[t] * sign > 0}
    if not kept:
        raise ValueError(f"no task of {which} polarity among {', '.join(sorted(weights))}")
    return kept


def mean_rationale_tokens(examples: Sequence[Example], tokenizer: Any) -> dict[str, int]:
    """Mean rationale length in tokens per task (the default length of blank rationales)."""
    lengths: dict[str, list[int]] = defaultdict(list)
    for ex in examples:
        if ex.rationale and not is_blank(ex.rationale):
            lengths[ex.task].append(len(tokenizer(ex.rationale, add_special_tokens=False).input_ids))
    return {t: max(1, round(sum(v) / len(v))) for t, v in lengths.items()}


def needed_think_tokens(examples: Sequence[Example], objective: str, blank_len: dict[str, int] | int | None) -> int:
    if objective != "blank":
        return 0
    longest = max((blank_length(ex.rationale) for ex in examples), default=0)
    if isinstance(blank_len, dict):
        longest = max([longest, *blank_len.values()])
    elif blank_len:
        longest = max(longest, blank_len)
    return longest


def tokenize_examples(examples: Sequence[Example], tokenizer: Any, objective: str, max_length: int,
                      task_name: str | None = None, blank_len: dict[str, int] | int | None = None) -> list[dict]:
    from raftlab.tasks import get_task, task_for

    rows = []
    tasks: dict[str, Any] = {}
    for ex in examples:
        name = task_name or ex.task
        if name not in tasks:
            tasks[name] = get_task(task_name) if task_name else task_for(ex)
        bl = blank_len.get(ex.task) if isinstance(blank_len, dict) else blank_len
        rows += build_features(ex, tasks[name], tokenizer, objective, max_length, bl)
    return rows
