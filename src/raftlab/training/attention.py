"""Attention for training on a CPU: plain matmul attention that keeps one copy of its probabilities.

torch's fused CPU attention kernel (sdpa) is slow to differentiate: its backward costs several times its forward.
transformers' plain ("eager") attention trains more tokens per CPU-second with the same loss, but in bf16 it
computes the softmax into fp32, keeps that copy for the softmax's backward and a bf16 copy for the product with the
values, copies every key and value head once per query head that uses it, and scales the whole score matrix.
:func:`cpu_training_attention` computes the same function with the scale applied to the queries, each key/value
head multiplied by the query heads of its group at once (no copies), and the softmax in the inputs' dtype (fp32
accumulation inside torch's kernel), so one copy of the probabilities is kept; in bf16 its outputs are those of
the plain attention and its gradients differ from them by bf16 rounding.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("raftlab.training")

#: The name :func:`cpu_training_attention` is registered under in transformers' attention interfaces.
NAME = "raftlab_cpu_training"

#: Attention matrices (MB) that training on a CPU may hold for the plain matmul attention.
EAGER_ATTENTION_MB = 512

#: Architectures whose attention is exactly ``softmax(q k^T * scaling + mask) v`` with grouped key/value heads (no
#: soft-capping or sinks; a sliding window comes in the mask): :func:`cpu_training_attention` replaces their
#: eager attention. Others get transformers' eager attention.
PLAIN_ATTENTION_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})


def cpu_training_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, scaling: float,
                           dropout: float = 0.0, **kwargs: Any) -> tuple[Any, None]:
    """transformers' attention-interface signature: ``query`` (batch, heads, length, head dim), ``key``/``value``
    (batch, key/value heads, keys, head dim), ``attention_mask`` the additive (batch, 1, length, keys) mask of
    eager attention; returns (batch, length, heads, head dim) and no attention weights."""
    import torch

    if dropout:
        from transformers.models.llama.modeling_llama import eager_attention_forward

        return eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout, **kwargs)
    batch, heads, length, dim = query.shape
    kv_heads, keys = key.shape[1], key.shape[2]
    group = heads // kv_heads
    # query head h uses key/value head h // group, so a key/value head's query heads are consecutive
    q = (query * scaling).reshape(batch, kv_heads, group * length, dim)
    scores = torch.matmul(q, key.transpose(-1, -2)).view(batch, kv_heads, group, length, keys)
    if attention_mask is not None:
        if attention_mask.dtype != scores.dtype:  # fp32 weights under autocast: keep the scores in bf16
            attention_mask = attention_mask.clamp(min=torch.finfo(scores.dtype).min).to(scores.dtype)
        scores = scores + attention_mask[:, :, None]
    probs = torch.softmax(scores, dim=-1).view(batch, kv_heads, group * length, keys)
    out = torch.matmul(probs, value).view(batch, heads, length, dim)
    return out.transpose(1, 2).contiguous(), None


def register() -> str:
    """Register :func:`cpu_training_attention` (and eager attention's additive mask) under :data:`NAME`."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    ALL_ATTENTION_FUNCTIONS.register(NAME, cpu_training_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, eager_mask)
    return NAME


def attention_for_cpu_training(model: Any, longest: int, batch_size: int, checkpointing: bool) -> None:
    """On a CPU, train ``model`` (possibly peft-wrapped) with plain matmul attention instead of sdpa where its
    attention matrices stay small: batch x heads x ``longest``^2 x 4 bytes per layer, for every layer unless
    gradient checkpointing recomputes them, at most :data:`EAGER_ATTENTION_MB`. Architectures of
    :data:`PLAIN_ATTENTION_TYPES` get :func:`cpu_training_attention`, others transformers' eager attention."""
    import torch

    if torch.cuda.is_available():
        return
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = base.config
    if getattr(cfg, "_attn_implementation", None) != "sdpa" or not hasattr(base, "set_attn_implementation"):
        return
    heads = getattr(cfg, "num_attention_heads", 0) or 0
    layers = 1 if checkpointing else (getattr(cfg, "num_hidden_layers", 1) or 1)
    megabytes = batch_size * heads * longest**2 * 4 * layers / 2**20
    if not 0 < megabytes <= EAGER_ATTENTION_MB:
        return
    name = register() if getattr(cfg, "model_type", None) in PLAIN_ATTENTION_TYPES else "eager"
    base.set_attn_implementation(name)
    logger.debug("training attention: %s (%.0f MB of attention matrices)", name, megabytes)
