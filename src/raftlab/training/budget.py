"""Generation budgets derived from the data: how many new tokens a model needs to write what it was trained to write.

A budget shorter than the trained targets cuts every answer sentence off, and the cut samples then vote as a
unanimous, confident invalid answer (a RAFT model that reasons correctly reads as a confident failure). The
budget of an arm is therefore the ``quantile`` of the tokenized training-target lengths of that arm (the views
its objective trains for the prompt it is evaluated with), plus a margin, capped by the model's context.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from raftlab.schema import Example
from raftlab.training.features import views

logger = logging.getLogger(__name__)

QUANTILE = 0.99
#: Extra tokens on top of the quantile: max(MIN_MARGIN, MARGIN_FRACTION of it).
MIN_MARGIN = 16
MARGIN_FRACTION = 0.25
#: An eval folder's record of its generation budget.
BUDGET_FILE = "budget.json"


class Budget(BaseModel):
    """A generation budget and what it was derived from."""

    need: int
    quantile_tokens: int
    longest_tokens: int
    n_targets: int
    objective: str
    prompt_mode: str
    capped_by_context: bool = False

    def save(self, path: Path, chosen: int, requested: int | None) -> None:
        """Write ``budget.json`` (the budget used, the one asked for, and this need) for the artifact checks."""
        from raftlab.storage import write_json

        write_json(path, {"max_new_tokens": chosen, "requested": requested, **self.model_dump()})


def context_length(tokenizer: Any) -> int | None:
    """The tokenizer's ``model_max_length`` when it is a real limit (transformers uses ~1e30 for "unknown")."""
    limit = getattr(tokenizer, "model_max_length", None) or 0
    return int(limit) if 0 < limit < 1_000_000 else None


def generation_budget(examples: Sequence[Example], task: Any, tokenizer: Any, objective: str, prompt_mode: str,
                      context_length: int | None = None, quantile: float = QUANTILE) -> Budget:
    """The ``max_new_tokens`` an arm needs: the ``quantile`` of its training targets' token counts (the views
    of ``objective`` whose prompt is the ``prompt_mode`` prompt; EOS included) plus a margin, at most what fits
    in ``context_length`` after the longest prompt."""
    lengths, prompts = [], []
    for ex in examples:
        wanted = task.prompt(ex, prompt_mode)
        for prompt, target in views(ex, task, objective):
            if prompt == wanted:
                lengths.append(len(tokenizer(target, add_special_tokens=False).input_ids) + 1)
                prompts.append(prompt)
    if not lengths:
        raise ValueError(f"no training target of objective {objective!r} uses the {prompt_mode!r} prompt "
                         f"({len(examples)} examples): the model was not trained for this prompt")
    ordered = sorted(lengths)
    q = ordered[min(len(ordered) - 1, math.ceil(quantile * len(ordered)) - 1)]
    need = q + max(MIN_MARGIN, math.ceil(MARGIN_FRACTION * q))
    capped = False
    if context_length:
        longest_prompt = max(len(tokenizer(p, add_special_tokens=True).input_ids) for p in set(prompts))
        room = context_length - longest_prompt
        if 0 < room < need:
            need, capped = room, True
    return Budget(need=need, quantile_tokens=q, longest_tokens=ordered[-1], n_targets=len(lengths),
                  objective=objective, prompt_mode=prompt_mode, capped_by_context=capped)


def choose_budget(requested: int | None, budget: Budget, what: str) -> int:
    """``requested`` if given (warning when it is below the need), else the derived need."""
    if requested is None:
        return budget.need
    if requested < budget.need:
        logger.warning("%s: max_new_tokens=%d is below what the training targets need (%d: %d%% of them are up "
                       "to %d tokens); answers will be cut off and count as invalid", what, requested, budget.need,
                       round(100 * QUANTILE), budget.quantile_tokens)
    return requested


def settle_budget(requested: int | None, budget: Budget, task_name: str, out_dir: Path) -> int:
    """The ``max_new_tokens`` an eval runs with (:func:`choose_budget`), saved with the need in
    ``OUT/budget.json`` for the artifact checks."""
    chosen = choose_budget(requested, budget, f"{task_name} ({budget.objective}, {budget.prompt_mode} prompt)")
    budget.save(Path(out_dir) / BUDGET_FILE, chosen, requested)
    return chosen


def budget_for_model(model_dir: str | Path, task: Any, prompt_mode: str) -> Budget | None:
    """The budget a finetuned model needs, from its ``train_summary.json`` (its objective and training data);
    None when the model was not trained by raftlab or its training data is gone."""
    from raftlab.corrupt import read_json
    from raftlab.models import load_tokenizer
    from raftlab.models.loading import model_fix
    from raftlab.training.config import TrainConfig
    from raftlab.training.data import load_examples

    summary = Path(model_dir) / "train_summary.json"
    if not summary.is_file():
        return None
    saved = read_json(summary, model_fix(model_dir))  # damaged: an error, not a silent default budget
    try:
        config = TrainConfig.model_validate(saved["config"])
        examples = load_examples(config.data_paths(), config.objective)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.info("no generation budget from %s (%s)", summary, exc)
        return None
    tok = load_tokenizer(str(model_dir))
    try:
        return generation_budget(examples, task, tok, config.objective, prompt_mode, context_length(tok))
    except ValueError as exc:  # evaluated with a prompt it was not trained on
        logger.warning("%s: %s", model_dir, exc)
        return None
