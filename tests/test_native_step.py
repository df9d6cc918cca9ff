"""The native batch-1 decoding step computes the model's forward up to bf16 rounding, over several steps of one
cache, in both builds (portable loops everywhere; AVX-512 BF16 where the CPU has it), and falls back cleanly."""

from __future__ import annotations

import logging
import os
import shutil

import pytest
import torch

from raftlab.backends import native_kernels, native_step
from raftlab.backends.base import SamplingParams
from raftlab.backends.kv_cache import growing_cache
from raftlab.machine import cpu_flags

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    shutil.which(os.environ.get("CXX", "c++")) is None, reason="no C++ compiler to build the native extension")]

BUILDS = [False] + ([True] if "avx512_bf16" in cpu_flags() else [])


def _random_model(kind: str, dtype=torch.bfloat16, init: float = 0.02, vocab: int = 97):
    import transformers

    torch.manual_seed(0)
    config_class = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config,
                    "qwen3": transformers.Qwen3Config}[kind]
    # head_dim 32 and intermediate 160: the vectorised paths (multiples of 32); 97 vocabulary rows: a row tail
    config = config_class(vocab_size=vocab, hidden_size=128, intermediate_size=160, num_hidden_layers=3,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=128,
                          attn_implementation="sdpa", initializer_range=init, tie_word_embeddings=kind != "llama")
    return transformers.AutoModelForCausalLM.from_config(config).to(dtype).eval()


def _logits_three_ways(model, step, prompt, tokens, capacity=64):
    """Logits after each of ``tokens`` (fed one at a time after ``prompt``) from a float32 copy's forward, the
    model's bf16 forward and the native step, each with its own cache (``capacity``: positions preallocated)."""
    reference = _random_model(model.config.model_type, torch.float32, vocab=model.config.vocab_size)
    reference.load_state_dict({k: v.float() for k, v in model.state_dict().items()})
    caches = [growing_cache(m.config, capacity) for m in (reference, model, model)]
    out = []
    with torch.inference_mode():
        for m, cache in zip((reference, model, model), caches):
            m(input_ids=prompt, use_cache=True, cache=cache)
        n = prompt.shape[1]
        for j, t in enumerate(tokens):
            ids, pos = torch.tensor([[t]]), torch.tensor([[n + j]])
            exact = reference(input_ids=ids, position_ids=pos, use_cache=True, cache=caches[0]).logits[:, -1].float()
            theirs = model(input_ids=ids, position_ids=pos, use_cache=True, cache=caches[1]).logits[:, -1].float()
            ours = step(t, n + j, caches[2])
            out.append((exact, theirs, ours))
    assert caches[2].get_seq_length() == prompt.shape[1] + len(tokens)
    return out


@pytest.mark.parametrize("avx512_bf16", BUILDS, ids=lambda b: "avx512bf16" if b else "portable")
@pytest.mark.parametrize("kind", ["llama", "qwen2", "qwen3"])
def test_native_logits_are_as_close_to_float32_as_the_bf16_forward(kind, avx512_bf16):
    model = _random_model(kind)
    step = native_step.one_row_step_for(model, avx512_bf16=avx512_bf16)
    assert step is not None and step.extension.uses_avx512_bf16() is avx512_bf16
    prompt = torch.randint(3, 97, (1, 11))
    for exact, theirs, ours in _logits_three_ways(model, step, prompt, [5, 17, 60, 2]):
        # the native step rounds less often than the bf16 forward: no further from float32 (with slack for
        # the different summation order), and far closer to it than the logits' scale
        assert (ours - exact).abs().max() <= 1.5 * (theirs - exact).abs().max() + 1e-3
        assert (ours - exact).abs().max() < 0.05 * exact.abs().max()


def test_cache_growth_and_threads_do_not_change_the_logits():
    model = _random_model("qwen2")
    step = native_step.one_row_step_for(model, avx512_bf16=bool(BUILDS[-1]))
    prompt = torch.randint(3, 97, (1, 9))
    tokens = [5, 17, 60, 2, 9, 33]
    roomy = _logits_three_ways(model, step, prompt, tokens)
    # a cache with no spare position: every layer's buffers are reallocated at the first native step
    tight = _logits_three_ways(model, step, prompt, tokens, capacity=9)
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # rows and heads split over two threads: each output still summed by one thread
    try:
        threaded = _logits_three_ways(model, step, prompt, tokens)
    finally:
        torch.set_num_threads(before)
    for (_, _, a), (_, _, b), (_, _, c) in zip(roomy, tight, threaded):
        assert torch.equal(a, b) and torch.equal(a, c)


@pytest.mark.parametrize("avx512_bf16", BUILDS, ids=lambda b: "avx512bf16" if b else "portable")
def test_matvec_matches_torch(avx512_bf16):
    ext = native_kernels.load_extension(avx512_bf16)
    torch.manual_seed(1)
    for rows, cols in ((7, 64), (97, 128), (5, 40)):  # row tails, a width that is not a multiple of 32
        w, x = torch.randn(rows, cols).bfloat16(), torch.randn(cols).bfloat16()
        torch.testing.assert_close(ext.matvec(w, x), w.float() @ x.float(), atol=1e-4, rtol=1e-4)
    with pytest.raises(RuntimeError, match="contiguous bf16 vector"):
        ext.matvec(torch.randn(4, 64).bfloat16(), torch.randn(32).bfloat16())


@pytest.mark.parametrize("avx512_bf16", BUILDS, ids=lambda b: "avx512bf16" if b else "portable")
def test_norm_and_rotary_helpers_match_torch(avx512_bf16):
    ext = native_kernels.load_extension(avx512_bf16)
    torch.manual_seed(2)
    x, w = torch.randn(5, 1, 72).bfloat16(), torch.rand(72) + 0.5  # 72: a vector part and a scalar tail
    exact = torch.nn.functional.rms_norm(x.float(), (72,), w, 1e-6)
    torch.testing.assert_close(ext.rms_norm_rows(x, w, 1e-6).float(), exact, atol=0, rtol=2 ** -8)
    heads, kv_heads, dim = 4, 2, 16
    qkv = torch.randn(3, 1, (heads + 2 * kv_heads) * dim).bfloat16()
    angles = torch.rand(3, dim // 2) * 6
    cos, sin = angles.cos().repeat(1, 2), angles.sin().repeat(1, 2)
    qk = qkv.view(3, 1, -1, dim)[:, :, : heads + kv_heads].transpose(1, 2).float()
    rotated = qk * cos[:, None, None] + torch.cat([-qk[..., dim // 2:], qk[..., : dim // 2]], -1) * sin[:, None, None]
    got = ext.rotary_heads(qkv, cos, sin, heads + kv_heads, dim)
    assert got.shape == (3, heads + kv_heads, 1, dim)
    torch.testing.assert_close(got.float(), rotated, atol=1e-6, rtol=2 ** -8)


@pytest.mark.skipif("avx512_bf16" not in cpu_flags(), reason="the backend uses native kernels only with AVX-512 BF16")
def test_backend_decodes_single_prompts_natively_and_greedily_like_float32():
    from raftlab.backends.hf import HFBackend
    from raftlab.models import load_tokenizer

    tok = load_tokenizer("tiny")
    # large weights: wide logit gaps, so rounding cannot flip an argmax
    model = _random_model("llama", init=0.5, vocab=len(tok))
    reference = _random_model("llama", torch.float32, init=0.5, vocab=len(tok))
    reference.load_state_dict({k: v.float() for k, v in model.state_dict().items()})
    params = SamplingParams(n=1, temperature=0, max_new_tokens=12)
    native = HFBackend(model, tokenizer=tok, device="cpu")
    native.warm_up()  # what `raftlab serve` does before its first request
    assert isinstance(native._one_row, native_step.OneRowStep)
    ours = native.generate(["hello there"], params)[0][0]
    backend = HFBackend(reference, tokenizer=tok, device="cpu")
    theirs = backend.generate(["hello there"], params)[0][0]
    assert backend._one_row is False  # float32: the Python step
    assert ours.num_tokens == theirs.num_tokens > 3 and ours.text == theirs.text


def test_fallbacks(monkeypatch, caplog):
    model = _random_model("llama")
    assert native_step.one_row_step_for(_random_model("llama", torch.float32)) is None  # bf16 only
    monkeypatch.setenv("RAFTLAB_NATIVE", "0")
    assert native_step.one_row_step_for(model) is None
    monkeypatch.delenv("RAFTLAB_NATIVE")
    import raftlab.machine

    with monkeypatch.context() as m:  # a CPU without AVX-512 BF16: the portable loops are not used for speed
        m.setattr(raftlab.machine, "cpu_flags", lambda: frozenset({"avx2"}))
        assert native_kernels.load_extension() is None and native_step.one_row_step_for(model) is None

    from torch.utils import cpp_extension

    def no_compiler(**_: object):
        raise RuntimeError("Error building extension: c++: command not found")

    monkeypatch.setattr(cpp_extension, "load", no_compiler)
    monkeypatch.setattr(native_kernels, "_loaded", {})
    with caplog.at_level(logging.WARNING, logger="raftlab.backends.native_kernels"):
        assert native_step.one_row_step_for(model, avx512_bf16=False) is None
    assert "unavailable" in caplog.text and "command not found" in caplog.text


@pytest.mark.parametrize("avx512_bf16", BUILDS, ids=lambda b: "avx512bf16" if b else "portable")
def test_native_cascade_merge_equals_attention_over_the_concatenation(avx512_bf16):
    import types

    from raftlab.backends.cascade import CascadeCache, cascade_attention

    ext = native_kernels.load_extension(avx512_bf16)
    torch.manual_seed(0)
    p, n, heads, kv_heads, dim, lp, lg = 3, 4, 6, 2, 32, 7, 5
    bf = torch.bfloat16
    prompt_k, prompt_v = torch.randn(p, kv_heads, lp, dim).to(bf), torch.randn(p, kv_heads, lp, dim).to(bf)
    mask = torch.ones(p, lp, dtype=torch.long)
    mask[0, :3] = 0  # left padding of the first prompt
    layer = types.SimpleNamespace(keys=prompt_k, values=prompt_v)
    cache = CascadeCache(types.SimpleNamespace(layers=[layer]), mask, n, budget=lg)
    own_k, own_v = torch.randn(p * n, kv_heads, lg, dim).to(bf), torch.randn(p * n, kv_heads, lg, dim).to(bf)
    for t in range(lg):
        keys, values = cache.update(own_k[:, :, t : t + 1], own_v[:, :, t : t + 1], 0)
    query = torch.randn(p * n, heads, 1, dim).to(bf)

    def reference(rows):  # float32 attention over the concatenation of the same bf16 values
        k = torch.cat([prompt_k.repeat_interleave(n, 0), own_k], 2)[rows].repeat_interleave(heads // kv_heads, 1)
        v = torch.cat([prompt_v.repeat_interleave(n, 0), own_v], 2)[rows].repeat_interleave(heads // kv_heads, 1)
        m = torch.cat([mask.repeat_interleave(n, 0), torch.ones(p * n, lg, dtype=torch.long)], 1)[rows].bool()
        out = torch.nn.functional.scaled_dot_product_attention(query[rows].float(), k.float(), v.float(),
                                                               attn_mask=m[:, None, None, :])
        return out.transpose(1, 2)

    module = types.SimpleNamespace(layer_idx=0)
    for rows in (torch.arange(p * n), torch.tensor([0, 3, 5, 11])):
        if len(rows) < p * n:
            cache.select_rows(rows)
        args = (module, query[rows], keys[rows], values[rows], None)
        ours, _ = cascade_attention(*args, scaling=dim**-0.5, cascade=cache, native=ext)
        theirs, _ = cascade_attention(*args, scaling=dim**-0.5, cascade=cache)  # torch's kernels, bf16
        exact = reference(rows)
        assert ours.dtype == bf and ours.shape == exact.shape
        assert (ours.float() - exact).abs().max() <= 1.5 * (theirs.float() - exact).abs().max() + 1e-3
        assert (ours.float() - exact).abs().max() < 0.02
