"""Cascade attention for self-consistency decoding: the k samples of a prompt read its KV cache once.

With k samples per prompt, the usual way (repeat the prompt's KV cache k times, attend row by row) reads every
prompt's keys and values k times at every step of every layer. On a CPU, decoding attention is bound by those
memory reads, and with in-context prompts of a few hundred tokens they rival the model's matrix products. Here
each layer keeps the prompts' keys/values once (a row per prompt slot) and the samples' own generated keys/values
separately (a buffer row per sample); prompts join free slots while others decode (continuous batching). In bf16
with the native extension (:mod:`raftlab.engine.native_build`), one call does a whole step: per prompt and
key/value head, the prompt's keys (packed once, as the prompt joins, so that one AVX-512 BF16
instruction scores 16 keys) serve every query head of every sample still decoding, with one softmax over the
prompt's and the sample's own tokens. Otherwise torch's fused CPU attention kernel runs twice: all k samples of a
prompt attend to it as the query rows of one sequence, and each sample attends to its own tokens; the two partial
results are merged by their log-sum-exps, which gives exactly the softmax over the concatenation (the
prefix/suffix split of Hydragen and cascade inference). Scores accumulate in float32 in both, as in transformers'
sdpa path.

Used by :class:`raftlab.engine.decoder.Decoder` for sampling on a CPU with the architectures of
:data:`CASCADE_MODEL_TYPES`; everything else keeps the standard path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from raftlab.engine.kv_cache import full_attention_only

#: Name under which :func:`cascade_attention` is registered in transformers' attention interface.
ATTENTION_NAME = "raftlab_cascade"

#: Keys per block of the native kernel's packed prompt keys (one AVX-512 register of float32 scores).
KEY_BLOCK = 16

#: Architectures whose decoder layers call the attention interface the way :func:`cascade_attention` expects
#: (rotary positions, a ``layer_idx`` per attention module, no soft-capping or sliding windows). Others keep the
#: model's own attention.
CASCADE_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})


class CascadeCache:
    """Per layer: the prompts' keys/values once, ``(slots, kv_heads, width, head_dim)``, and the generated tokens'
    keys/values of the samples, in buffers of ``(rows, kv_heads, budget, head_dim)`` filled in place.

    Active row ``r`` is sample ``slot[r] % n`` of the prompt in slot ``slot[r] // n``; its own tokens live in
    buffer row ``buffer_row[r]``, ``own[r]`` of them written so far. The prompts of ``prefill_cache`` take the first
    slots, with all their rows active. For continuous batching, ``slots``/``width``/``rows`` reserve room for more:
    rows that finish leave (:meth:`select_rows`: their buffer rows are freed, nothing is copied), and new prompts
    join free slots with fresh rows (:meth:`admit`), so each row has its own length."""

    def __init__(self, prefill_cache: Any, prompt_mask: Any, n: int, budget: int, *, slots: int | None = None,
                 width: int | None = None, rows: int | None = None) -> None:
        import torch

        first = prefill_cache.layers[0].keys
        prompts, length = prompt_mask.shape
        slots, width = max(slots or 0, prompts), max(width or 0, length)
        self.n, self.budget = n, max(1, budget)
        self.capacity_rows = max(rows or 0, prompts * n)
        self.layers = []
        for layer in prefill_cache.layers:
            keys, values = layer.keys, layer.values
            if (slots, width) != (prompts, length):  # room for prompts that join later
                keys, values = _room(keys, slots, width), _room(values, slots, width)
            self.layers.append((keys, values))
        self._own_buffers: list[tuple[Any, Any] | None] = [None] * len(self.layers)
        device = prompt_mask.device
        self.prompt_mask = torch.zeros((slots, width), dtype=prompt_mask.dtype, device=device)
        self.prompt_mask[:prompts, :length] = prompt_mask
        self.prompt_mask[prompts:, 0] = 1  # free slots attend to one (zero) key: a finite softmax, never used
        self.prompt_bias = _bias(self.prompt_mask != 0, first.dtype)[:, None, None, :]  # (S, 1, 1, W)
        self.packed: dict[int, tuple[Any, Any]] = {}  # layer -> (packed prompt keys, prompt bias): native kernel
        self.slot = torch.arange(prompts * n, device=device)
        self.buffer_row = torch.arange(prompts * n, device=device)
        self.free_rows = list(range(self.capacity_rows - 1, prompts * n - 1, -1))  # popped from the end
        #: own tokens written per row, and the count each row attends to in the current step (the one just written)
        self.own = torch.zeros(prompts * n, dtype=torch.long, device=device)
        self.attend = self.own + 1
        self.length = 0  # the longest row's own tokens
        self.full = slots == prompts  # every row of the slots x k grid is active (no scatter/gather needed)

    # -- the parts of transformers' Cache protocol a decoder forward uses
    def update(self, key_states, value_states, layer_idx: int, *args: Any, **kwargs: Any):
        """Write every active row's new key/value (``(rows, kv_heads, 1, head_dim)``) at its own next position;
        returns the layer's whole buffers up to the longest row (index them with :attr:`buffer_row`)."""
        import torch

        if self._own_buffers[layer_idx] is None:
            _, heads, _, dim = key_states.shape
            shape = (self.capacity_rows, heads, self.budget, dim)
            # zeros: torch's kernel (the fallback) masks a row's unwritten positions, and a masked value must still
            # be finite (weight 0 times NaN is NaN)
            self._own_buffers[layer_idx] = (torch.zeros(shape, dtype=key_states.dtype, device=key_states.device),
                                            torch.zeros(shape, dtype=key_states.dtype, device=key_states.device))
        own_k, own_v = self._own_buffers[layer_idx]
        if layer_idx == 0:
            self.attend = self.own + 1
            self.end = int(self.attend.max())
        own_k[self.buffer_row, :, self.own] = key_states[:, :, 0]
        own_v[self.buffer_row, :, self.own] = value_states[:, :, 0]
        if layer_idx == len(self.layers) - 1:
            self.own, self.length = self.attend, self.end
        return own_k[:, :, : self.end], own_v[:, :, : self.end]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.layers[0][0].shape[-2] + self.length

    def packed_prompt(self, layer_idx: int) -> tuple[Any, Any]:
        """The layer's prompt keys in the native kernel's layout, built on first use and kept (a prompt's cache
        never changes while it decodes; prompts that join are packed as they join): ``(slots, kv_heads, blocks,
        head_dim / 2, 16, 2)``, blocks of :data:`KEY_BLOCK` keys with each key's adjacent values paired,
        zero-padded to whole blocks; and the float32 bias ``(slots, blocks * 16)``: 0 at the prompt positions
        attended to, -inf at padding."""
        if layer_idx not in self.packed:
            self.packed[layer_idx] = _pack(self.layers[layer_idx][0], self.prompt_mask)
        return self.packed[layer_idx]

    def admit(self, prefill_cache: Any, prompt_mask: Any, slots: Sequence[int]) -> None:
        """New prompts (a prefill of ``len(slots)`` prompts, its 2-D ``prompt_mask``) join in the free ``slots``,
        each with ``n`` fresh rows appended after the active ones."""
        import torch

        index = torch.tensor(list(slots), dtype=torch.long, device=self.slot.device)
        length, fresh_rows = prompt_mask.shape[1], len(slots) * self.n
        if length > self.prompt_mask.shape[1] or fresh_rows > len(self.free_rows):
            raise ValueError(f"cannot admit {len(slots)} prompts of {length} positions: the cache holds "
                             f"{self.prompt_mask.shape[1]} positions and {len(self.free_rows)} free rows")
        self.prompt_mask[index] = 0
        self.prompt_mask[index, :length] = prompt_mask
        self.prompt_bias[index] = _bias(self.prompt_mask[index] != 0, self.prompt_bias.dtype)[:, None, None, :]
        for i, layer in enumerate(prefill_cache.layers):
            keys, values = self.layers[i][0], self.layers[i][1]
            keys[index, :, :length] = layer.keys
            values[index, :, :length] = layer.values
            if i in self.packed:
                packed, bias = _pack(keys[index], self.prompt_mask[index])
                self.packed[i][0][index], self.packed[i][1][index] = packed, bias
        fresh = (index[:, None] * self.n + torch.arange(self.n, device=index.device)).reshape(-1)
        rows = torch.tensor([self.free_rows.pop() for _ in range(fresh_rows)], device=index.device)
        self.slot = torch.cat([self.slot, fresh])
        self.buffer_row = torch.cat([self.buffer_row, rows])
        self.own = torch.cat([self.own, torch.zeros_like(fresh)])
        self.attend = torch.cat([self.attend, torch.ones_like(fresh)])
        self.full = False

    def select_rows(self, keep) -> None:
        """Keep only the active rows ``keep`` (ascending indices into the current rows); the others' buffer rows
        are freed (nothing is copied)."""
        kept = set(keep.tolist())
        self.free_rows += [b for r, b in enumerate(self.buffer_row.tolist()) if r not in kept]
        self.slot, self.buffer_row = self.slot[keep], self.buffer_row[keep]
        self.own, self.attend = self.own[keep], self.attend[keep]
        self.length = int(self.own.max()) if len(self.own) else 0
        self.full = False


def _room(tensor, slots: int, width: int):
    """``tensor`` ``(prompts, heads, length, dim)`` copied into zeros of ``(slots, heads, width, dim)``."""
    out = tensor.new_zeros((slots, tensor.shape[1], width, tensor.shape[3]))
    out[: tensor.shape[0], :, : tensor.shape[2]] = tensor
    return out


def _pack(keys, prompt_mask) -> tuple[Any, Any]:
    """Prompt keys ``(P, kv_heads, length, dim)`` in the native kernel's layout, and their float32 bias (see
    :meth:`CascadeCache.packed_prompt`)."""
    import torch

    prompts, heads, length, dim = keys.shape
    blocks = -(-length // KEY_BLOCK)
    padded = torch.nn.functional.pad(keys, (0, 0, 0, blocks * KEY_BLOCK - length))
    packed = padded.view(prompts, heads, blocks, KEY_BLOCK, dim // 2, 2).permute(0, 1, 2, 4, 3, 5)
    valid = torch.nn.functional.pad(prompt_mask != 0, (0, blocks * KEY_BLOCK - length), value=False)
    return packed.contiguous(), _bias(valid, torch.float32)


def _bias(attended, dtype):
    """An additive attention bias of ``dtype``: 0 where ``attended`` (bool) is True, -inf elsewhere."""
    import torch

    return torch.zeros(attended.shape, dtype=dtype, device=attended.device).masked_fill_(~attended, float("-inf"))


def cascade_attention(module: Any, query, key, value, attention_mask, scaling: float | None = None,
                      dropout: float = 0.0, cascade: CascadeCache | None = None, native: Any = None, **kwargs: Any):
    """One decoding step of attention for ``query`` ``(rows, heads, 1, head_dim)``: ``key``/``value`` are the
    buffers of generated tokens :meth:`CascadeCache.update` returns (row ``r``'s in ``cascade.buffer_row[r]``), the
    prompts' come from ``cascade``. Returns
    ``(rows, 1, heads, head_dim)`` as transformers' attention functions do.

    ``native``: the extension of :mod:`raftlab.engine.native_build`, whose ``cascade_attention`` does the whole
    step in one call for bf16 (one softmax over a row's prompt and own tokens, a prompt's keys read once per key/value
    head for all its samples; rounded once). Otherwise two calls of torch's fused CPU attention kernel, which also
    returns each query's log-sum-exp: the k samples of a prompt attend to it as k query positions of one sequence,
    each row attends to its own generated tokens, and the two partial results are merged with their log-sum-exps
    (exactly the softmax over the concatenation)."""
    import torch

    flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    rows, heads, q_len, dim = query.shape
    if cascade is None or q_len != 1:
        raise RuntimeError("cascade attention is for single-token decoding steps with a CascadeCache")
    prompt_k, prompt_v = cascade.layers[module.layer_idx]
    p, n = prompt_k.shape[0], cascade.n
    if native is not None and query.dtype == torch.bfloat16:
        scale = scaling if scaling is not None else dim ** -0.5
        packed_keys, prompt_bias = cascade.packed_prompt(module.layer_idx)
        return native.cascade_attention(query, key, value, packed_keys, prompt_v, prompt_bias, cascade.slot,
                                        cascade.buffer_row, cascade.attend, n, scale), None
    if cascade.full:
        grid = query.view(p, n, heads, dim)
    else:
        grid = query.new_zeros((p * n, heads, dim))
        grid.index_copy_(0, cascade.slot, query.view(rows, heads, dim))
        grid = grid.view(p, n, heads, dim)
    # a prompt's queries: its n samples x the query heads sharing each key/value head, as one query sequence
    kv_heads = prompt_k.shape[1]
    groups = heads // kv_heads
    grid = grid.view(p, n, kv_heads, groups, dim).permute(0, 2, 1, 3, 4).reshape(p, kv_heads, n * groups, dim)
    from_prompt, prompt_lse = flash(grid, prompt_k, prompt_v, attn_mask=cascade.prompt_bias, scale=scaling)
    from_prompt = from_prompt.view(p, kv_heads, n, groups, dim).permute(0, 2, 1, 3, 4).reshape(p * n, heads, dim)
    prompt_lse = prompt_lse.view(p, kv_heads, n, groups).permute(0, 2, 1, 3).reshape(p * n, heads)
    if not cascade.full:
        from_prompt, prompt_lse = from_prompt.index_select(0, cascade.slot), prompt_lse.index_select(0, cascade.slot)
    # each row's own tokens (index_select: on a CPU several times faster than indexing with a tensor)
    key, value = key.index_select(0, cascade.buffer_row), value.index_select(0, cascade.buffer_row)
    own_mask = None
    if int(cascade.attend.min()) < key.shape[2]:  # rows that joined later have fewer own tokens
        position = torch.arange(key.shape[2], device=key.device)
        own_mask = _bias(position < cascade.attend[:, None], query.dtype)[:, None, None, :]
    from_own, own_lse = flash(query, key, value, attn_mask=own_mask, scale=scaling)  # (rows, heads, 1, dim), lse
    own_lse = own_lse.view(rows, heads)
    # softmax over both parts = the parts' outputs weighted by exp(lse_part) / (exp(lse_prompt) + exp(lse_own))
    prompt_share = torch.sigmoid(prompt_lse - own_lse)[..., None]
    out = torch.lerp(from_own.view(rows, heads, dim).float(), from_prompt.float(), prompt_share)
    return out.to(query.dtype).view(rows, 1, heads, dim), None


def register() -> None:
    """Register :func:`cascade_attention` with transformers (idempotent)."""
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION_NAME, cascade_attention)


def supports_cascade(model: Any) -> bool:
    """Whether decoding steps of ``model`` can use :func:`cascade_attention`: an architecture of
    :data:`CASCADE_MODEL_TYPES` (SmolLM2 is a Llama) with full attention in every layer, dispatching through
    transformers' attention interface."""
    config = model.config
    if getattr(config, "model_type", None) not in CASCADE_MODEL_TYPES:
        return False
    if not full_attention_only(config):
        return False
    if getattr(config, "_attn_implementation", None) not in ("sdpa", "eager", ATTENTION_NAME):
        return False
    if not getattr(model, "_supports_attention_backend", False):
        return False  # models that do not dispatch through ALL_ATTENTION_FUNCTIONS
    heads = getattr(config, "num_attention_heads", None)
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    return bool(heads and kv_heads and heads % kv_heads == 0)
