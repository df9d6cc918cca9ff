"""Blank-rationale ablation data: each rationale replaced by ``<Think_0> … <Think_{L-1}>``."""

from __future__ import annotations

import re
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from raftlab.schema import Example

__all__ = ["add_think_tokens", "blank_length", "is_blank", "make_blank_rationales", "think_tokens"]

_THINK = re.compile(r"<Think_\d+>")


def think_tokens(length: int) -> list[str]:
    """``["<Think_0>", ..., "<Think_{L-1}>"]``."""
    return [f"<Think_{i}>" for i in range(max(0, length))]


def add_think_tokens(tokenizer: Any, length: int, model: Any = None) -> list[int]:
    """Add ``<Think_0> … <Think_{length-1}>`` to ``tokenizer`` as real special tokens (one id each) and return
    their ids; with ``model`` its embeddings are resized too (mean-initialised)."""
    tokens = think_tokens(length)
    tokenizer.add_tokens(tokens, special_tokens=True)
    if model is not None and model.get_input_embeddings().num_embeddings < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    return tokenizer.convert_tokens_to_ids(tokens)


def is_blank(rationale: str | None) -> bool:
    """True for a rationale made only of think tokens."""
    return bool(rationale) and _THINK.sub("", rationale).strip() == ""


def blank_length(rationale: str | None) -> int:
    """Number of think tokens in a rationale."""
    return len(_THINK.findall(rationale or ""))


def _length(text: str, tokenizer: Any) -> int:
    return len(tokenizer(text, add_special_tokens=False).input_ids) if tokenizer else len(text.split())


def make_blank_rationales(data: Sequence[Example] | str | Path, length: str | int = "task_mean",
                          tokenizer: Any = None, *, out: str | Path | None = None) -> list[Example]:
    """Replace rationales by think tokens; ``length`` is ``task_mean`` (the task's mean rationale length),
    ``own`` (each example's own length) or a fixed int. Lengths are in tokens with a tokenizer, else words.
    With ``out`` the result is also written as JSONL."""
    from raftlab.tasks import load_jsonl, write_jsonl

    examples = load_jsonl(data) if isinstance(data, (str, Path)) else list(data)
    missing = [e.id for e in examples if not (e.rationale and e.rationale.strip())]
    if missing:
        raise ValueError(f"{len(missing)} examples have no rationale to blank (first: {missing[0]})")
    lengths = {e.id: _length(e.rationale, tokenizer) for e in examples}
    by_task: dict[str, list[int]] = defaultdict(list)
    for e in examples:
        by_task[e.task].append(lengths[e.id])
    means = {t: max(1, round(statistics.mean(v))) for t, v in by_task.items()}
    result = []
    for e in examples:
        if isinstance(length, int):
            L = length
        elif length == "own":
            L = max(1, lengths[e.id])
        elif length == "task_mean":
            L = means[e.task]
        else:
            raise ValueError(f"length must be 'task_mean', 'own' or an int, not {length!r}")
        result.append(e.model_copy(update={"rationale": " ".join(think_tokens(L)),
                                           "meta": {**e.meta, "blank_of_length": lengths[e.id]}}))
    if out is not None:
        write_jsonl(result, out)
    return result
