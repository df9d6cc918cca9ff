"""Cascade attention for self-consistency decoding: the k samples of a prompt read its KV cache once.

With k samples per prompt, the usual way (repeat the prompt's KV cache k times, attend row by row) reads every
prompt's keys and values k times at every step of every layer. On a CPU, decoding attention is bound by those
memory reads, and with in-context prompts of a few hundred tokens they rival the model's matrix products. Here
each layer keeps the prompts' keys/values once (``P`` rows) and the samples' own generated keys/values separately
(``P*k`` rows). In bf16 with the native extension (:mod:`raftlab.engine.native_build`), one call does a whole
step: per prompt and key/value head, the prompt's keys (packed once per generation so that one AVX-512 BF16
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
    """Per layer: the prompts' keys/values once, ``(P, kv_heads, prompt_len, head_dim)``, and the generated
    tokens' keys/values of every active sample, ``(rows, kv_heads, budget, head_dim)``, filled in place.

    ``slot[r]`` is active row ``r``'s place in the full ``P * k`` grid (rows that finished are dropped from the
    generated buffers and from ``slot``)."""

    def __init__(self, prefill_cache: Any, prompt_mask: Any, n: int, budget: int) -> None:
        import torch

        self.layers = []
        for layer in prefill_cache.layers:
            self.layers.append([layer.keys, layer.values, None, None])
        self.n, self.budget, self.length = n, max(1, budget), 0
        prompts, device = prompt_mask.shape[0], prompt_mask.device
        dtype = prefill_cache.layers[0].keys.dtype
        bias = torch.zeros((prompts, 1, 1, prompt_mask.shape[1]), dtype=dtype, device=device)
        self.prompt_bias = bias.masked_fill(prompt_mask[:, None, None, :] == 0, float("-inf"))  # (P,1,1,Lp)
        self.prompt_mask = prompt_mask
        self.packed: dict[int, tuple[Any, Any]] = {}  # layer -> (packed prompt keys, prompt bias): native kernel
        self.slot = torch.arange(prompts * n, device=device)
        self.full = True  # every row of the P x k grid is active (no scatter/gather needed)

    # -- the parts of transformers' Cache protocol a decoder forward uses
    def update(self, key_states, value_states, layer_idx: int, *args: Any, **kwargs: Any):
        import torch

        entry = self.layers[layer_idx]
        if entry[2] is None:
            rows, heads, _, dim = key_states.shape
            shape = (rows, heads, self.budget, dim)
            entry[2] = torch.empty(shape, dtype=key_states.dtype, device=key_states.device)
            entry[3] = torch.empty(shape, dtype=key_states.dtype, device=key_states.device)
        at = self.length
        entry[2][:, :, at : at + 1] = key_states
        entry[3][:, :, at : at + 1] = value_states
        if layer_idx == len(self.layers) - 1:
            self.length += 1
            end = self.length
        else:
            end = at + 1
        return entry[2][:, :, :end], entry[3][:, :, :end]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.layers[0][0].shape[-2] + self.length

    def packed_prompt(self, layer_idx: int) -> tuple[Any, Any]:
        """The layer's prompt keys in the native kernel's layout, built on first use and kept for the generation
        (the prompts' cache never changes while decoding): ``(P, kv_heads, blocks, head_dim / 2, 16, 2)``, blocks
        of :data:`KEY_BLOCK` keys with each key's adjacent values paired, zero-padded to whole blocks; and the
        float32 bias ``(P, blocks * 16)``: 0 at the prompt positions attended to, -inf at padding."""
        import torch

        if layer_idx not in self.packed:
            keys = self.layers[layer_idx][0]
            prompts, heads, length, dim = keys.shape
            blocks = -(-length // KEY_BLOCK)
            padded = torch.nn.functional.pad(keys, (0, 0, 0, blocks * KEY_BLOCK - length))
            packed = padded.view(prompts, heads, blocks, KEY_BLOCK, dim // 2, 2).permute(0, 1, 2, 4, 3, 5)
            valid = torch.nn.functional.pad(self.prompt_mask != 0, (0, blocks * KEY_BLOCK - length), value=False)
            bias = torch.zeros(valid.shape, dtype=torch.float32, device=keys.device).masked_fill_(~valid, float("-inf"))
            self.packed[layer_idx] = (packed.contiguous(), bias)
        return self.packed[layer_idx]

    def select_rows(self, keep) -> None:
        """Keep only the active rows ``keep`` (ascending indices into the current rows). The generated tokens of
        the rows kept move to the front of their buffers in place (only the positions written so far are copied),
        and the buffers' views shrink to them."""
        filled = self.length
        for entry in self.layers:
            for i in (2, 3):
                if entry[i] is not None:
                    buffer = entry[i]
                    buffer[: len(keep), :, :filled] = buffer[keep, :, :filled]  # the right side is a copy
                    entry[i] = buffer[: len(keep)]
        self.slot = self.slot[keep]
        self.full = False


def cascade_attention(module: Any, query, key, value, attention_mask, scaling: float | None = None,
                      dropout: float = 0.0, cascade: CascadeCache | None = None, native: Any = None, **kwargs: Any):
    """One decoding step of attention for ``query`` ``(rows, heads, 1, head_dim)``: ``key``/``value`` are the
    rows' generated tokens (from :meth:`CascadeCache.update`), the prompts' come from ``cascade``. Returns
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
    prompt_k, prompt_v = cascade.layers[module.layer_idx][:2]
    p, n = prompt_k.shape[0], cascade.n
    if native is not None and query.dtype == torch.bfloat16:
        scale = scaling if scaling is not None else dim ** -0.5
        packed_keys, prompt_bias = cascade.packed_prompt(module.layer_idx)
        return native.cascade_attention(query, key, value, packed_keys, prompt_v, prompt_bias, cascade.slot, n,
                                        scale), None
    if cascade.full:
        grid = query.view(p, n, heads, dim)
    else:
        grid = query.new_zeros((p * n, heads, dim))
        grid[cascade.slot] = query.view(rows, heads, dim)
        grid = grid.view(p, n, heads, dim)
    # a prompt's queries: its n samples x the query heads sharing each key/value head, as one query sequence
    kv_heads = prompt_k.shape[1]
    groups = heads // kv_heads
    grid = grid.view(p, n, kv_heads, groups, dim).permute(0, 2, 1, 3, 4).reshape(p, kv_heads, n * groups, dim)
    from_prompt, prompt_lse = flash(grid, prompt_k, prompt_v, attn_mask=cascade.prompt_bias, scale=scaling)
    from_prompt = from_prompt.view(p, kv_heads, n, groups, dim).permute(0, 2, 1, 3, 4).reshape(p * n, heads, dim)
    prompt_lse = prompt_lse.view(p, kv_heads, n, groups).permute(0, 2, 1, 3).reshape(p * n, heads)
    if not cascade.full:
        from_prompt, prompt_lse = from_prompt[cascade.slot], prompt_lse[cascade.slot]
    from_own, own_lse = flash(query, key, value, scale=scaling)  # (rows, heads, 1, dim), (rows, heads, 1)
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
