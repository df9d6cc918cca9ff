"""Prefilling a batch of prompts: when they share a long token prefix (the same instruction and in-context
demonstrations), that prefix runs through the model once and its KV cache is repeated for every prompt."""

from __future__ import annotations

import copy
from typing import Any

from raftlab.models.kv_keyword import cache_argument, cache_of

#: Shared prompt tokens from which the prefix is prefilled once for a whole batch (shorter ones are not worth it).
MIN_SHARED_PREFIX = 16


def common_prefix_length(rows: list[list[int]]) -> int:
    """The number of leading tokens every row has in common."""
    first, length = rows[0], min(len(r) for r in rows)
    for r in rows[1:]:
        i = 0
        while i < length and r[i] == first[i]:
            i += 1
        length = i
    return length


def _new_cache(model: Any, cache_arg: str, capacity: int | None = None) -> dict[str, Any]:
    """The cache argument of a prefill: a cache that grows in place where the model allows it, sized for
    ``capacity`` positions when known."""
    from raftlab.engine.kv_cache import growing_cache

    cache = growing_cache(model.config, capacity)
    return {} if cache is None else {cache_arg: cache}


def shared_prefix(model: Any, encoded: list[list[int]], *, device: Any, cache_arg: str, capacity: int):
    """``(length, cache)`` of the token prefix every prompt of ``encoded`` starts with, prefilled once so that
    prefills of any subset of the prompts start from it (:func:`prefill`'s ``prefix``), or None when the prompts
    share fewer than :data:`MIN_SHARED_PREFIX` tokens. ``capacity``: positions a prompt's cache will hold."""
    import torch

    shared = common_prefix_length(encoded) if len(encoded) > 1 else 0
    shared = min(shared, min(len(e) for e in encoded) - 1)  # every prompt keeps a token to predict from
    if shared < MIN_SHARED_PREFIX:
        return None
    prefix = torch.tensor([encoded[0][:shared]], device=device)
    out = model(input_ids=prefix, position_ids=torch.arange(shared, device=device)[None], use_cache=True,
                logits_to_keep=1, **_new_cache(model, cache_arg, capacity))
    return shared, cache_of(out, cache_arg)


def prefill(model: Any, encoded: list[list[int]], *, pad_token_id: int, device: Any, cache_arg: str,
            budget: int = 0, prefix: tuple[int, Any] | None = None):
    """Run the prompts ``encoded`` (token ids) through ``model``: ``(cache, last logits, attention mask, position
    ids)``, with room in the cache for ``budget`` generated positions.

    When the prompts share at least :data:`MIN_SHARED_PREFIX` leading tokens, that prefix is computed once and its
    KV cache repeated for every prompt; each prompt's own tokens follow it, right-aligned behind masked padding
    (``[prefix][pad..][suffix]``), with positions that continue the prefix. Otherwise the prompts are
    left-padded. ``prefix``: a prefix already computed by :func:`shared_prefix` that every prompt starts with (its
    cache is copied, not changed)."""
    import torch

    pad, dev = pad_token_id, device
    capacity = max(len(e) for e in encoded) + budget
    if prefix is None:
        prefix = shared_prefix(model, encoded, device=dev, cache_arg=cache_arg, capacity=capacity)
        cache = None if prefix is None else prefix[1]
    else:
        cache = copy.deepcopy(prefix[1])
    if prefix is None:
        width = max(len(e) for e in encoded)
        input_ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded], device=dev)
        attn = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded], device=dev)
        positions = (attn.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=input_ids, attention_mask=attn, position_ids=positions, use_cache=True,
                    logits_to_keep=1, **_new_cache(model, cache_arg, width + budget))
        return cache_of(out, cache_arg), out.logits[:, -1, :].float(), attn, positions
    shared = prefix[0]
    cache.batch_repeat_interleave(len(encoded))
    tails = [e[shared:] for e in encoded]
    width = max(len(t) for t in tails)
    input_ids = torch.tensor([[pad] * (width - len(t)) + t for t in tails], device=dev)
    tail_mask = torch.tensor([[0] * (width - len(t)) + [1] * len(t) for t in tails], device=dev)
    attn = torch.cat([tail_mask.new_ones((len(tails), shared)), tail_mask], dim=1)
    positions = ((tail_mask.cumsum(-1) - 1).clamp(min=0) + shared)
    out = model(input_ids=input_ids, attention_mask=attn, position_ids=positions, use_cache=True,
                logits_to_keep=1, **{cache_arg: cache})
    return cache_of(out, cache_arg), out.logits[:, -1, :].float(), attn, positions
