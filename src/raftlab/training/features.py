"""Prompt/target construction with exact loss masks for every objective.

The prompt is exactly the evaluation prompt (``task.prompt``): label-only views use the ``direct`` prompt,
rationale views the ``cot`` prompt. Labels are -100 everywhere except on the target tokens (and the EOS that
ends them). The prompt/target boundary is found by tokenizing the prompt and prompt+target and taking their
longest common prefix, which is exact for tokenizers with or without BOS (nothing is dropped or shifted).
"""

from __future__ import annotations

from typing import Any, Literal

from raftlab.rationales.blank import is_blank, think_tokens
from raftlab.schema import Example
from raftlab.tasks.answers import strip_answer_sentence

Objective = Literal["label", "raft", "blank", "reason", "explain", "mix", "align"]
OBJECTIVES: tuple[str, ...] = ("label", "raft", "blank", "reason", "explain", "mix", "align")
RATIONALE_OBJECTIVES = frozenset({"raft", "blank", "reason", "explain", "mix", "align"})
IGNORE = -100


def encode(tokenizer: Any, prompt: str, target: str, max_length: int = 1024) -> dict[str, list[int]]:
    """``input_ids``/``labels`` for prompt+target+EOS, loss on the target (and EOS) only.

    Truncation keeps the target: the prompt is cut from the left when the pair is too long.
    """
    p = tokenizer(prompt).input_ids
    full = tokenizer(prompt + target).input_ids
    k = 0
    while k < min(len(p), len(full)) and p[k] == full[k]:
        k += 1
    full = full + [tokenizer.eos_token_id]
    labels = [IGNORE] * k + full[k:]
    if len(full) > max_length:
        cut = len(full) - max_length
        if cut >= k:
            raise ValueError(f"target alone is longer than max_length={max_length}")
        full, labels = full[:1] + full[1 + cut:], labels[:1] + labels[1 + cut:]  # keep BOS/first token
    return {"input_ids": full, "labels": labels}


def _need_rationale(example: Example, objective: str, line: int | None = None) -> str:
    if not example.rationale or not example.rationale.strip():
        where = f"line {line}: " if line is not None else ""
        raise ValueError(f"{where}example {example.id!r} has no 'rationale', which objective {objective!r} needs "
                         "(generate rationales with `raftlab rationales generate`, or use --objective label)")
    return example.rationale.strip()


#: The prompt modes an objective trains on (the ``task.prompt`` modes of its :func:`views`): a model is evaluated
#: faithfully only with one of these.
PROMPT_MODES: dict[str, tuple[str, ...]] = {"label": ("direct",), "raft": ("cot",), "reason": ("cot",),
                                            "blank": ("cot",), "explain": ("direct",), "mix": ("direct", "cot"),
                                            "align": ("direct", "cot")}


def views(example: Example, task: Any, objective: str, blank_len: int | None = None) -> list[tuple[str, str]]:
    """The (prompt, target) pairs an example contributes under ``objective`` (two for mix and align)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    label_view = (task.prompt(example, "direct"), task.target(example))
    if objective == "label":
        return [label_view]
    rationale = _need_rationale(example, objective)
    if objective == "blank":
        if not is_blank(rationale):
            rationale = " ".join(think_tokens(blank_len or len(rationale.split())))
        return [(task.prompt(example, "cot"), task.target(example, rationale))]
    reason_view = (task.prompt(example, "cot"), task.target(example, rationale))
    if objective in ("raft", "reason"):
        return [reason_view]
    if objective == "explain":
        explanation = strip_answer_sentence(rationale)  # the label already came first
        return [(task.prompt(example, "direct"), task.target(example).rstrip() + " " + explanation)]
    return [label_view, reason_view]  # mix (pooled) and align (paired)


def build_features(example: Example, task: Any, tokenizer: Any, objective: str, max_length: int = 1024,
                   blank_len: int | None = None) -> list[dict[str, list[int]]]:
    """Tokenized training features of one example.

    ``align`` yields one feature with both views (``input_ids``/``labels`` for the label view and
    ``r_input_ids``/``r_labels`` for the rationale view); ``mix`` yields two independent features.
    """
    pairs = views(example, task, objective, blank_len)
    encoded = [encode(tokenizer, p, t, max_length) for p, t in pairs]
    if objective == "align":
        label, rat = encoded
        return [{**label, "r_input_ids": rat["input_ids"], "r_labels": rat["labels"]}]
    return encoded
