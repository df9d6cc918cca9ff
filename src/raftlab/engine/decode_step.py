"""One decoding step of a Llama-family model without transformers' per-call machinery, for CPU sampling.

A decoding step of a small model on a CPU is mostly small operations: hundreds of tensor operations around the
matrix products, and transformers adds keyword plumbing, mask construction, output dataclasses and checkpointing
wrappers around each layer. :class:`DecodeStep` runs the same computation with the model's own modules and
functions (embedding, rotary embedding, ``apply_rotary_pos_emb``, RMSNorms, activation, the attention function
transformers would dispatch to, the cache's ``update``), with these changes of arrangement:

* on a CPU with bf16 instructions (prepacked weights, :mod:`raftlab.engine.cpu_kernels`) the query/key/value
  projections run as one matrix product with the three weights stacked (one product instead of three, at the
  cost of a prepacked copy of the attention's q/k/v weights);
* the rotary embedding is applied to queries and keys at once (adjacent heads of one tensor), as
  ``x * cos + roll(x, half) * sin'`` with ``sin'`` the sine with its first half negated: exactly transformers'
  ``x * cos + rotate_half(x) * sin`` (a sign flip commutes with rounding) in 4 operations instead of 9;
* with prepacked bf16 weights (:attr:`DecodeStep.fused`), the SiLU of the gate, the gate x up product and both
  residual additions run as oneDNN post-ops on the float32 accumulator of the products they follow (one rounding
  instead of two: the logits are closer to a float32 forward, not further; test). Otherwise (float32, or no
  packing) the model's own linear layers run (float32 products are compute-bound: stacking them gains nothing);
* with fused products and the native extension (:mod:`raftlab.engine.native_build`), the RMSNorms, the rotary
  embedding and, under cascade attention, the whole attention step (prompt and own tokens) run as C++ loops,
  rounded once. Small tensor operations right after a matrix product has streamed megabytes of weights
  cost several times their isolated time (the interpreter's and dispatcher's working set is evicted); a native
  loop has little of either.

In float32 the logits equal the model's forward exactly on this project's CPU (tests allow 1e-5), and whole
generations give the same samples (tested; benchmarks/bench_sc.py measures its speed).

It applies to :data:`DECODE_STEP_MODEL_TYPES` with full attention and to steps whose attention needs no mask
beyond the keys' padding (cascade attention, or sdpa/eager with a padding mask); :func:`decode_step_for`
returns None for anything else, and the caller keeps the model's forward.
"""

from __future__ import annotations

import sys
from typing import Any

from raftlab.engine.kv_cache import full_attention_only

#: Architectures whose decoder layer is exactly ``x + o(attn(rotary(qkv(norm(x))))); x + down(act(gate) * up)``
#: with these module names (Qwen3 adds per-head q/k norms, handled).
DECODE_STEP_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})


def supports_decode_step(model: Any) -> bool:
    """Whether ``model``'s architecture and settings are those :class:`DecodeStep` computes."""
    config = model.config
    if getattr(config, "model_type", None) not in DECODE_STEP_MODEL_TYPES or not full_attention_only(config):
        return False
    if getattr(config, "_attn_implementation", None) not in ("sdpa", "eager"):
        return False
    if getattr(config, "partial_rotary_factor", 1.0) != 1.0:  # the rotation covers every head dimension
        return False
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None or not hasattr(model, "lm_head") or getattr(config, "final_logit_softcapping", None):
        return False
    for layer in layers:
        attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
        if attn is None or mlp is None or not all(hasattr(attn, p) for p in ("q_proj", "k_proj", "v_proj", "o_proj")):
            return False
        if not all(hasattr(mlp, p) for p in ("gate_proj", "up_proj", "down_proj", "act_fn")):
            return False
    return True


def decode_step_for(model: Any) -> DecodeStep | None:
    """A :class:`DecodeStep` for ``model`` when :func:`supports_decode_step`, else None."""
    return DecodeStep(model) if supports_decode_step(model) else None


class _Stacked:
    """Several bf16 linear layers as one oneDNN-prepacked matrix product (outputs concatenated in order)."""

    def __init__(self, linears: list[Any]) -> None:
        import torch

        weight = torch.cat([m.weight.detach() for m in linears], dim=0)
        biases = [m.bias for m in linears]
        self.bias = None if all(b is None for b in biases) else torch.cat(
            [b.detach() if b is not None else weight.new_zeros(m.weight.shape[0]) for b, m in zip(biases, linears)])
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, 40)

    def __call__(self, x):
        import torch

        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")


class DecodeStep:
    """``step(input_ids, position_ids, cache, attention_mask=None, **attention_kwargs) -> logits`` of one new
    token per row: ``(rows, vocab)`` float32 logits of the position after it; the cache is updated in place."""

    def __init__(self, model: Any) -> None:
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        self.model = model
        self.inner = model.model
        config = model.config
        self.config = config
        self._interfaces = ALL_ATTENTION_FUNCTIONS
        first = self.inner.layers[0].self_attn
        module = sys.modules[type(first).__module__]
        self.eager = module.eager_attention_forward
        self.heads = config.num_attention_heads
        self.kv_heads = getattr(config, "num_key_value_heads", None) or self.heads
        self.head_dim = first.head_dim
        #: bf16 on a CPU with prepacked weights: q/k/v as one product, and the activation, the gate product and
        #: the residual additions inside oneDNN's products (post-ops on the float32 accumulator: one rounding
        #: instead of two). Otherwise (float32: compute-bound, stacking gains nothing) the model's own linears.
        self.fused = all(_fusable(layer) for layer in self.inner.layers)
        #: with fused products, the native extension (:mod:`raftlab.engine.native_build`): RMSNorms, rotary
        #: embedding and cascade attention as native loops (rounded once; see the module docstring)
        self.native = _native_extension() if self.fused else None
        #: the native rotation of the stacked q/k heads (fused products stack q/k/v; Qwen3 normalises q and k
        #: before the rotation, so it keeps torch's)
        self.native_rotary = self.native is not None and getattr(first, "q_norm", None) is None
        self.layers = []
        for layer in self.inner.layers:
            attn, mlp = layer.self_attn, layer.mlp
            qkv = _Stacked([attn.q_proj, attn.k_proj, attn.v_proj]) if self.fused else None
            norm1, norm2 = layer.input_layernorm, layer.post_attention_layernorm
            if self.native is not None:
                norm1, norm2 = _NativeNorm(norm1, self.native), _NativeNorm(norm2, self.native)
            self.layers.append((norm1, qkv, attn, getattr(attn, "q_norm", None),
                                getattr(attn, "k_norm", None), norm2, mlp))
        self.final_norm = self.inner.norm if self.native is None else _NativeNorm(self.inner.norm, self.native)

    def padding_mask(self, attention_mask):
        """The attention mask of a decoding step from the 2-D padding mask ``(rows, keys)``, as the model's
        attention function takes it (None where nothing is padded)."""
        import torch

        if bool(attention_mask.all()):
            return None
        keep = attention_mask[:, None, None, :].bool()
        if self.config._attn_implementation == "sdpa":
            return keep
        dtype = self.inner.embed_tokens.weight.dtype
        return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(~keep, torch.finfo(dtype).min)

    def __call__(self, input_ids, position_ids, cache: Any, attention_mask=None, **attention_kwargs: Any):
        import torch

        rows = input_ids.shape[0]
        heads, kv_heads, dim = self.heads, self.kv_heads, self.head_dim
        attention = self._interfaces.get_interface(self.config._attn_implementation, self.eager)
        hidden = self.inner.embed_tokens(input_ids)
        half = dim // 2
        if self.native_rotary:  # float32 cos/sin (rows, dim)
            cos, sin = self.inner.rotary_emb(hidden.new_empty(0, dtype=torch.float32), position_ids=position_ids)
            cos, sin = cos.reshape(rows, -1), sin.reshape(rows, -1)
        else:
            cos, sin = self.inner.rotary_emb(hidden, position_ids=position_ids)
            cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
            # rotate_half(x) * sin == roll(x, half) * (sin with its first half negated), exactly (a sign flip
            # commutes with rounding): 4 operations instead of transformers' 9 per tensor
            signed_sin = torch.cat([-sin[..., :half], sin[..., half:]], dim=-1)
        linear = torch.ops.mkldnn._linear_pointwise if self.fused else None
        if self.native is not None and "cascade" in attention_kwargs:  # the whole attention step in one native call
            attention_kwargs = {**attention_kwargs, "native": self.native}
        for i, (norm1, qkv_proj, attn, q_norm, k_norm, norm2, mlp) in enumerate(self.layers):
            x = norm1(hidden)
            if qkv_proj is not None:
                qkv = qkv_proj(x).view(rows, 1, heads + 2 * kv_heads, dim)
                q, k, v = qkv[:, :, :heads], qkv[:, :, heads:heads + kv_heads], qkv[:, :, heads + kv_heads:]
            else:
                q = attn.q_proj(x).view(rows, 1, heads, dim)
                k = attn.k_proj(x).view(rows, 1, kv_heads, dim)
                v = attn.v_proj(x).view(rows, 1, kv_heads, dim)
            if q_norm is not None:  # Qwen3: per-head norms before the rotary embedding
                q, k = q_norm(q), k_norm(k)
            if self.native_rotary:
                qk = self.native.rotary_heads(qkv.view(rows, 1, -1), cos, sin, heads + kv_heads, dim)
                q, k = qk[:, :heads], qk[:, heads:]
            elif qkv_proj is not None and q_norm is None:  # queries and keys are adjacent heads: one rotation
                qk = qkv[:, :, : heads + kv_heads].transpose(1, 2)
                qk = qk * cos + torch.roll(qk, half, dims=-1) * signed_sin
                q, k = qk[:, :heads], qk[:, heads:]
            else:
                q, k = q.transpose(1, 2), k.transpose(1, 2)
                q = q * cos + torch.roll(q, half, dims=-1) * signed_sin
                k = k * cos + torch.roll(k, half, dims=-1) * signed_sin
            k, v = cache.update(k, v.transpose(1, 2), i)
            out, _ = attention(attn, q, k, v, attention_mask, dropout=0.0, scaling=attn.scaling, **attention_kwargs)
            out = out.reshape(rows, 1, heads * dim)
            if linear is not None:
                hidden = linear.binary(out, hidden, attn.o_proj._raftlab_packed, None, "add")
                x = norm2(hidden)
                gate = linear(x, mlp.gate_proj._raftlab_packed, None, "swish", [], "")
                product = linear.binary(x, gate, mlp.up_proj._raftlab_packed, None, "mul")
                hidden = linear.binary(product, hidden, mlp.down_proj._raftlab_packed, None, "add")
            else:
                hidden = hidden + attn.o_proj(out)
                x = norm2(hidden)
                hidden = hidden + mlp.down_proj(mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x))
        return self.model.lm_head(self.final_norm(hidden))[:, -1, :].float()


class _NativeNorm:
    """An RMSNorm module as the native extension's ``rms_norm_rows`` (float32 weight, one rounding)."""

    def __init__(self, norm: Any, extension: Any) -> None:
        self.weight = norm.weight.detach().float().contiguous()
        self.eps = float(norm.variance_epsilon)
        self.extension = extension

    def __call__(self, x):
        return self.extension.rms_norm_rows(x, self.weight, self.eps)


def _native_extension() -> Any:
    """The native extension when enabled and built (None otherwise; see :mod:`raftlab.engine.native_build`)."""
    from raftlab.engine.native_build import load_extension, native_enabled

    return load_extension() if native_enabled() else None


def _fusable(layer: Any) -> bool:
    """Whether a layer's MLP and output projection can run as fused oneDNN products: prepacked bf16 weights
    (:func:`raftlab.engine.cpu_kernels.pack_linear_layers`), no biases, SiLU."""
    mlp, o_proj = layer.mlp, layer.self_attn.o_proj
    linears = (mlp.gate_proj, mlp.up_proj, mlp.down_proj, o_proj)
    return (all(hasattr(m, "_raftlab_packed") and m.bias is None for m in linears)
            and type(mlp.act_fn).__name__ in ("SiLU", "SiLUActivation"))
