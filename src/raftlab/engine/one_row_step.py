"""Batch-1 decoding of Llama-family bf16 models in one native call per token (``csrc/one_row_step.cpp``).

At batch 1 (``raftlab serve`` answering one request, a local teacher writing one rationale) a decoding step
reads every weight once and computes little, so its speed is the speed at which the weights stream from memory.
A step of tensor operations cannot reach it on a CPU: oneDNN's matrix-vector products read the weights below the
core's bandwidth, and the hundreds of small operations around them each cost microseconds of dispatch and, right
after a product has streamed megabytes through the caches, several times more. The native step runs a whole token
through the model in C++: matrix-vector products with AVX-512 BF16 dot products and software prefetching (used
only on CPUs with those instructions; a portable build with plain loops exists for tests, slower than torch's
kernels), the norms, rotary embedding, cache write, attention, SiLU and residual additions as loops over a few
hundred numbers, and torch's intra-op threads over blocks of rows.

Numerics: the residual stream stays in float32 and activations are rounded to bf16 where a product reads them;
the model's bf16 forward rounds after every operation instead, so the native logits are at least as close to a
float32 forward as the model's own bf16 forward (test). The extension is compiled on first use with the
machine's C++ compiler (``torch.utils.cpp_extension``; tens of seconds, cached under ``TORCH_EXTENSIONS_DIR``,
default ``~/.cache/torch_extensions``; :mod:`raftlab.engine.native_build`); without a compiler, or with
``RAFTLAB_NATIVE=0``, decoding keeps the Python step (:mod:`raftlab.engine.decode_step`) and says why once.

Safety: the native step checks the shape, dtype, contiguity and device of every tensor it is given (batch-1 cache
buffers with room for the new position included) before reading any of them, so a wrong argument raises a
RuntimeError rather than corrupting memory; it then releases the GIL while it computes, so other Python threads
(a server's request handling) keep running during a step.
"""

from __future__ import annotations

from typing import Any

from raftlab.engine.decode_step import supports_decode_step
from raftlab.engine.native_build import load_extension, native_enabled

#: rotary embeddings whose frequencies do not depend on the sequence length (read once from the model)
STATIC_ROPE_TYPES = frozenset({"default", "linear", "llama3", "yarn"})


class OneRowStep:
    """``step(token, position, cache) -> (1, vocab) float32 logits`` for a supported model (see
    :func:`one_row_step_for`); ``cache`` is a transformers cache of :class:`raftlab.engine.kv_cache.GrowingLayer`
    layers, whose new position this step writes."""

    def __init__(self, model: Any, extension: Any) -> None:
        import torch

        self.extension = extension
        config, inner = model.config, model.model
        first = inner.layers[0].self_attn
        self.heads = config.num_attention_heads
        self.kv_heads = getattr(config, "num_key_value_heads", None) or self.heads
        self.head_dim = first.head_dim
        self.scaling = float(first.scaling)
        self.eps = float(inner.norm.variance_epsilon)

        def f32(t: Any) -> Any:
            return torch.empty(0) if t is None else t.detach().float().contiguous()

        def bf16(t: Any) -> Any:
            return t.detach().contiguous()

        tensors = []
        for layer in inner.layers:
            attn, mlp = layer.self_attn, layer.mlp
            q_norm, k_norm = getattr(attn, "q_norm", None), getattr(attn, "k_norm", None)
            tensors += [f32(layer.input_layernorm.weight), bf16(attn.q_proj.weight), bf16(attn.k_proj.weight),
                        bf16(attn.v_proj.weight), f32(attn.q_proj.bias), f32(attn.k_proj.bias), f32(attn.v_proj.bias),
                        f32(None if q_norm is None else q_norm.weight), f32(None if k_norm is None else k_norm.weight),
                        bf16(attn.o_proj.weight), f32(layer.post_attention_layernorm.weight),
                        bf16(mlp.gate_proj.weight), bf16(mlp.up_proj.weight), bf16(mlp.down_proj.weight)]
        self.layer_tensors = tensors
        self.embed = bf16(inner.embed_tokens.weight)
        self.final_norm = f32(inner.norm.weight)
        self.lm_head = bf16(model.lm_head.weight)
        rotary = inner.rotary_emb
        self.inv_freq = rotary.inv_freq.detach().float().contiguous()
        self.rope_scale = float(getattr(rotary, "attention_scaling", 1.0))

    def __call__(self, token: int, position: int, cache: Any):
        logits = self.extension.step(*self.arguments(token, position, cache))
        for layer in cache.layers:
            layer.advance(1)
        return logits

    def arguments(self, token: int, position: int, cache: Any) -> tuple:
        """The extension's ``step`` arguments for ``token`` at ``position``, with room reserved in every layer of
        ``cache`` for the new position (which the call writes; the caller then advances the layers)."""
        layers = cache.layers
        index = layers[0].get_seq_length()
        keys, values = [], []
        for layer in layers:
            k, v = layer.reserve(1)
            keys.append(k)
            values.append(v)
        return (int(token), int(position), index, self.embed, self.inv_freq, self.rope_scale, self.layer_tensors,
                keys, values, self.final_norm, self.lm_head, self.heads, self.kv_heads, self.head_dim, self.eps,
                self.scaling)


def one_row_step_for(model: Any, avx512_bf16: bool | None = None) -> OneRowStep | None:
    """A :class:`OneRowStep` when ``model`` is a supported Llama-family model (:func:`supports_decode_step`) with bf16
    weights on the CPU, SiLU, no biases outside q/k/v, a static rotary embedding and untied or tied LM head, and
    the extension is available; else None (the caller keeps the Python step)."""
    import torch

    if not native_enabled() or not supports_decode_step(model):
        return None
    config, inner = model.config, model.model
    if inner.embed_tokens.weight.device.type != "cpu" or model.lm_head.bias is not None:
        return None
    if not all(p.dtype == torch.bfloat16 for p in model.parameters()):
        return None
    rotary = inner.rotary_emb
    if getattr(rotary, "rope_type", "default") not in STATIC_ROPE_TYPES:
        return None
    if rotary.inv_freq.numel() != inner.layers[0].self_attn.head_dim // 2:  # partial rotary: not in the native step
        return None
    if getattr(config, "hidden_act", "silu") != "silu" or getattr(config, "head_dim", None) not in (
            None, inner.layers[0].self_attn.head_dim):
        return None
    eps = inner.norm.variance_epsilon
    for layer in inner.layers:
        attn, mlp = layer.self_attn, layer.mlp
        projections = (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj, mlp.gate_proj, mlp.up_proj, mlp.down_proj)
        if not all(type(m) is torch.nn.Linear for m in projections):  # e.g. unmerged LoRA layers
            return None
        if any(m.bias is not None for m in projections[3:]):
            return None
        norms = [layer.input_layernorm, layer.post_attention_layernorm, getattr(attn, "q_norm", None),
                 getattr(attn, "k_norm", None)]
        if any(n is not None and getattr(n, "variance_epsilon", None) != eps for n in norms):
            return None
    extension = load_extension(avx512_bf16)
    return None if extension is None else OneRowStep(model, extension)
