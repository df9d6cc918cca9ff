"""Target-only logits: the LM head and cross-entropy run only where a token is trained.

A causal LM's loss needs the vocabulary logits only at positions whose next token is a target; prompt and padding
positions never count, yet the stock forward projects every position onto the vocabulary (for SmolLM2, 49k logits
per token, about a fifth of the forward FLOPs) and backpropagates through all of them. :func:`target_inputs`
rewrites a batch so the model keeps only those positions (``logits_to_keep`` as an index tensor) and scores them
against the already-shifted targets (``shift_labels``). The loss is then computed by the model's own
``ForCausalLMLoss`` (mean, or sum / ``num_items_in_batch`` under gradient accumulation): the same value and the
same gradients as the full computation, for padded and packed batches alike.
"""

from __future__ import annotations

import inspect
from typing import Any

from raftlab.training.features import IGNORE

MODEL_KEYS = ("input_ids", "attention_mask", "position_ids")


def shifted_targets(labels: Any) -> Any:
    """``labels`` shifted left by one (position i predicts token i+1); the last position gets ``IGNORE``.

    In a packed row every sequence's first label is ``IGNORE``, so no target crosses a sequence boundary."""
    import torch

    out = torch.full_like(labels, IGNORE)
    out[..., :-1] = labels[..., 1:]
    return out


def target_inputs(inputs: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Model kwargs for one view (``prefix`` ``""`` or ``"r_"``) computing logits only at target positions.

    The kept positions are the columns where any row has a target, so a padded batch keeps their union (and
    ``IGNORE`` masks the rest) and a packed batch (one row) keeps exactly its targets."""
    shift = shifted_targets(inputs[f"{prefix}labels"])
    cols = (shift != IGNORE).any(dim=0).nonzero().squeeze(-1)
    kept = shift[:, cols].contiguous()
    return {**model_inputs(inputs, prefix), "logits_to_keep": cols, "labels": kept, "shift_labels": kept}


def model_inputs(inputs: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A view's ``input_ids``/``attention_mask``/``position_ids`` with the KV cache off: transformers builds the
    block-diagonal mask of a packed row from its position ids only when there is no cache (a config with
    ``use_cache: true`` would otherwise let packed examples attend to each other)."""
    kwargs = {k: inputs[f"{prefix}{k}"] for k in MODEL_KEYS if f"{prefix}{k}" in inputs}
    return {**kwargs, "use_cache": False}


def unwrapped(model: Any) -> Any:
    """The transformers model inside DDP/FSDP (``.module``) and peft (``.get_base_model()``) wrappers."""
    for _ in range(8):
        inner = model.get_base_model() if hasattr(model, "get_base_model") else getattr(model, "module", model)
        if inner is model:
            break
        model = inner
    return model


def supports_target_logits(model: Any) -> bool:
    """True when the (possibly peft-wrapped) model's forward takes ``logits_to_keep`` and its loss is the standard
    shifted causal-LM loss (which honours ``shift_labels``)."""
    from transformers.loss.loss_utils import LOSS_MAPPING, ForCausalLMLoss

    base = unwrapped(model)
    if "logits_to_keep" not in inspect.signature(base.forward).parameters:
        return False
    if getattr(getattr(base, "config", None), "is_encoder_decoder", False):
        return False
    loss_type = getattr(base, "loss_type", None) or "ForCausalLM"
    return LOSS_MAPPING.get(loss_type) is ForCausalLMLoss
