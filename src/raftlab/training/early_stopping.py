"""Training to convergence: a seeded dev split, its loss, early stopping on it, and the record of why training
stopped.

The dev split is carved from the loaded examples by example id (a seeded hash of ``task`` and ``id``), before any
objective-specific view or mixture is built, so FT and RAFT on the same data with the same seed hold out the same
examples and never train on them. The dev criterion is the training objective itself: the mean cross-entropy over
the target tokens of all dev examples (for align, λ·label view + (1−λ)·rationale view, each such a mean).
Scheduling is transformers' own: evaluation every ``eval_steps`` (and at the last step), ``EarlyStoppingCallback``
on ``eval_loss`` and ``load_best_model_at_end``, so the final model holds the best evaluation's weights.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from raftlab.schema import Example
from raftlab.training.features import IGNORE


def _rank(seed: int, key: tuple[str, str]) -> str:
    return hashlib.sha256(f"{seed}\0{key[0]}\0{key[1]}".encode()).hexdigest()


def carve_dev(examples: Sequence[Example], size: int, seed: int) -> tuple[list[Example], list[Example]]:
    """``(train, dev)``: the ``size`` distinct questions (task and :attr:`Example.source_id`) of lowest seeded hash
    go to dev, with every copy of them (a question the teacher saw in several traversals of the data is never on
    both sides). Independent of the examples' order and of the objective."""
    if size <= 0:
        return list(examples), []
    keys = sorted({(ex.task, ex.source_id) for ex in examples}, key=lambda k: _rank(seed, k))
    if size >= len(keys):
        raise ValueError(f"dev_size {size} leaves no training examples (the data has {len(keys)} distinct "
                         "examples); lower dev_size")
    held = set(keys[:size])
    return ([ex for ex in examples if (ex.task, ex.source_id) not in held],
            [ex for ex in examples if (ex.task, ex.source_id) in held])


def evaluation_arguments(config: Any) -> dict[str, Any]:
    """``TrainingArguments`` for a dev set: evaluate and checkpoint every ``eval_steps`` (a checkpoint per
    evaluation, so the best one can become the final model), lowest ``eval_loss`` best."""
    if not config.dev_size:
        return {"save_steps": config.save_steps}
    return {"eval_strategy": "steps", "eval_steps": config.eval_steps, "save_steps": config.eval_steps,
            "per_device_eval_batch_size": config.batch_size, "load_best_model_at_end": True,
            "metric_for_best_model": "eval_loss", "greater_is_better": False,
            "restore_callback_states_from_checkpoint": True}  # a resumed run keeps its patience count


def callbacks(config: Any) -> list[Any]:
    """transformers' ``EarlyStoppingCallback`` when there is a dev set and a patience."""
    if not (config.dev_size and config.patience):
        return []
    from transformers import EarlyStoppingCallback

    return [EarlyStoppingCallback(early_stopping_patience=config.patience)]


def token_losses(model: Any, inputs: dict[str, Any], prefix: str, target_logits: bool) -> tuple[Any, Any]:
    """Per row of a batch: the summed cross-entropy over one view's target tokens and their number (the dev loss
    is the sum over every dev row divided by the count, whatever the batching)."""
    import torch.nn.functional as F

    from raftlab.training.loss import model_inputs, shifted_targets, target_inputs

    if target_logits:
        kwargs = target_inputs(inputs, prefix)
        targets = kwargs.pop("labels")
        kwargs.pop("shift_labels")
    else:
        kwargs = model_inputs(inputs, prefix)
        targets = shifted_targets(inputs[f"{prefix}labels"])
    logits = model(**kwargs).logits.float()
    ce = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE, reduction="none")
    return ce.sum(-1), (targets != IGNORE).sum(-1).to(ce.dtype)


def dev_loss(sums: Any, counts: Any, weights: Sequence[float]) -> float:
    """``Σ_v w_v · (Σ rows sums[:, v]) / (Σ rows counts[:, v])``: the objective over all dev target tokens."""
    return float(sum(w * sums[:, v].sum() / max(counts[:, v].sum(), 1) for v, w in enumerate(weights)))


def untied_missing(model: Any, missing: Sequence[str]) -> list[str]:
    """``missing`` state-dict keys less those tied to a parameter that was loaded (one tensor, several names)."""
    groups: dict[int, set[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        groups.setdefault(param.data_ptr(), set()).add(name)
    gone = set(missing)
    loaded_twin = {name for names in groups.values() if names - gone for name in names}
    return [k for k in missing if k not in loaded_twin]


def evaluations(log_history: list[dict[str, Any]]) -> list[dict[str, float]]:
    """``[{"step", "loss"}]`` of every dev evaluation in a Trainer's log history."""
    return [{"step": int(h["step"]), "loss": float(h["eval_loss"])} for h in log_history if "eval_loss" in h]


def stopping(state: Any, config: Any, n_train: int, n_dev: int) -> dict[str, Any]:
    """Why and when training stopped: ``reason`` (``early_stopping``, or ``max_steps`` / ``epochs`` reached),
    ``steps`` run of ``max_steps``, the dev losses, the ``best_step`` (lowest dev loss; its weights are the
    final model) and ``still_improving`` (the last evaluation was the best so far when the maximum was reached;
    None without two evaluations)."""
    evals = evaluations(state.log_history)
    early = bool(config.dev_size and config.patience) and state.global_step < state.max_steps
    best = min(evals, key=lambda e: e["loss"]) if evals else None  # the first of equal losses, as transformers
    improving = None
    if early:
        improving = False
    elif len(evals) >= 2:
        improving = evals[-1]["loss"] < min(e["loss"] for e in evals[:-1])
    return {"reason": "early_stopping" if early else ("max_steps" if config.max_steps > 0 else "epochs"),
            "steps": state.global_step, "max_steps": state.max_steps, "best_step": best and best["step"],
            "best_dev_loss": best and best["loss"], "dev_losses": evals, "still_improving": improving,
            "train_examples": n_train, "dev_examples": n_dev}
