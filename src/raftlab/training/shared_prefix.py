"""Shared-prefix training: the leading tokens every row of a batch starts with, computed once per batch.

Rows of one task begin with the same instruction (the paper's templates), and length-grouped batches hold rows of
one task, so a batch's rows often share their first few dozen tokens. A causal model's keys and values at those
positions depend only on them, so they are the same in every row. :func:`prefix_pass` runs the model over the
common prefix once (one row) and hands its KV cache, expanded to the batch, to the forward over the rest of each
row (:func:`suffix_inputs`). The loss and the gradients are those of the whole rows: the expanded cache sums
every row's gradient into the one prefix pass, so only the order of the sums differs.

Used only where that holds exactly: right-padded rows (not packed), logits only at target positions, all after
the prefix, and a model whose forward takes a KV cache and position ids (:func:`supports_shared_prefix`).
"""

from __future__ import annotations

from typing import Any

from raftlab.models.kv_keyword import cache_argument, cache_of
from raftlab.training.loss import unwrapped

#: Shorter common prefixes are not worth a second forward call.
MIN_PREFIX = 8

#: Architectures whose forward continues a KV cache given with position ids and a mask over both parts (the
#: Llama family, full attention).
MODEL_TYPES = frozenset({"llama", "qwen2", "qwen3"})

#: Rotary embeddings whose frequencies do not depend on the longest position of a call ("dynamic" and "longrope"
#: do, so a prefix alone would get other frequencies than the whole row).
STATIC_ROPE = frozenset({None, "default", "linear", "llama3"})


def supports_shared_prefix(model: Any) -> bool:
    """Whether ``model`` (possibly peft-wrapped) is of :data:`MODEL_TYPES` with full attention in every layer and
    rotary embeddings of :data:`STATIC_ROPE`."""
    config = getattr(unwrapped(model), "config", None)
    if getattr(config, "model_type", None) not in MODEL_TYPES:
        return False
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if rope.get("rope_type", rope.get("type")) not in STATIC_ROPE:
        return False
    if getattr(config, "use_sliding_window", False):
        return False
    return all(t == "full_attention" for t in (getattr(config, "layer_types", None) or ["full_attention"]))


def shared_prefix_length(kwargs: dict[str, Any]) -> int:
    """How many leading positions of the batch ``kwargs`` (model inputs with ``logits_to_keep`` as an index tensor,
    from :func:`raftlab.training.loss.target_inputs`) to compute once: the tokens every row has in common, up to the
    first kept logit (a prefix position's logits are never needed) and leaving every row a token; 0 when that is
    under :data:`MIN_PREFIX`, for one row, or for packed rows (``position_ids``)."""
    import torch

    ids, keep = kwargs["input_ids"], kwargs.get("logits_to_keep")
    if ids.dim() != 2 or ids.shape[0] < 2 or "position_ids" in kwargs:
        return 0
    if not torch.is_tensor(keep) or keep.numel() == 0:
        return 0
    same = (ids == ids[:1]).all(dim=0)
    mask = kwargs.get("attention_mask")
    if mask is not None:
        same &= (mask == 1).all(dim=0)
    common = int(same.long().cumprod(0).sum())
    length = min(common, int(keep.min()), ids.shape[1] - 1)
    return length if length >= MIN_PREFIX else 0


def cache_keyword(model: Any) -> str:
    """The KV-cache keyword of the base model's forward (``cache``, or ``past_key_values`` in older transformers)."""
    return cache_argument(unwrapped(model))


def prefix_pass(model: Any, kwargs: dict[str, Any], length: int) -> Any:
    """The model's decoder (no LM head: no prefix position has a kept logit) over the first ``length`` tokens of
    one row, with gradients; returns its KV cache expanded (a view, no copy) to the batch's rows. The decoder is
    called directly, past the autocast that accelerate puts on the model's forward: call this under the same
    autocast (the trainer's ``accelerator.autocast()``)."""
    import torch

    ids = kwargs["input_ids"]
    positions = torch.arange(length, device=ids.device)[None]
    out = unwrapped(model).get_decoder()(input_ids=ids[:1, :length], position_ids=positions, use_cache=True)
    cache = cache_of(out, cache_keyword(model))
    rows = ids.shape[0]
    for layer in cache.layers:
        layer.keys = layer.keys.expand(rows, -1, -1, -1)
        layer.values = layer.values.expand(rows, -1, -1, -1)
    return cache


def suffix_inputs(model: Any, kwargs: dict[str, Any], length: int, cache: Any) -> dict[str, Any]:
    """``kwargs`` for the positions after the first ``length``, continuing ``cache``: the same kept logits and
    labels (their positions moved back by ``length``), position ids that continue the prefix, and the mask over
    the prefix and the rest."""
    import torch

    ids = kwargs["input_ids"]
    rows, width = ids.shape
    out = dict(kwargs)
    out["input_ids"] = ids[:, length:]
    out["position_ids"] = torch.arange(length, width, device=ids.device)[None].expand(rows, -1)
    out["logits_to_keep"] = kwargs["logits_to_keep"] - length
    out["use_cache"] = True
    out[cache_keyword(model)] = cache
    return out
