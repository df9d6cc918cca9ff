"""The native batch-1 decoding step computes the model's forward up to bf16 rounding, over several steps of one
cache, in both builds (portable loops everywhere; AVX-512 BF16 where the CPU has it, shown as skipped elsewhere),
rejects wrong arguments with a RuntimeError, releases the GIL while it runs, and falls back cleanly."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time

import pytest
import torch

from raftlab.backends.base import SamplingParams
from raftlab.engine import native_build, one_row_step
from raftlab.engine.kv_cache import growing_cache
from raftlab.machine import cpu_flags

pytestmark = pytest.mark.slow
needs_compiler = pytest.mark.skipif(shutil.which(os.environ.get("CXX", "c++")) is None,
                                    reason="no C++ compiler to build the native extension")
HAS_AVX512_BF16 = "avx512_bf16" in cpu_flags()
#: both builds, the AVX-512 BF16 one shown as skipped on CPUs without those instructions
BUILDS = [pytest.param(False, id="portable"),
          pytest.param(True, id="avx512bf16", marks=pytest.mark.skipif(
              not HAS_AVX512_BF16, reason="this CPU lacks AVX-512 BF16 (the portable build is tested)"))]


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


@needs_compiler
@pytest.mark.parametrize("avx512_bf16", BUILDS)
@pytest.mark.parametrize("kind", ["llama", "qwen2", "qwen3"])
def test_native_logits_are_as_close_to_float32_as_the_bf16_forward(kind, avx512_bf16):
    model = _random_model(kind)
    step = one_row_step.one_row_step_for(model, avx512_bf16=avx512_bf16)
    assert step is not None and step.extension.uses_avx512_bf16() is avx512_bf16
    prompt = torch.randint(3, 97, (1, 11))
    for exact, theirs, ours in _logits_three_ways(model, step, prompt, [5, 17, 60, 2]):
        # the native step rounds less often than the bf16 forward: no further from float32 (with slack for
        # the different summation order), and far closer to it than the logits' scale
        assert (ours - exact).abs().max() <= 1.5 * (theirs - exact).abs().max() + 1e-3
        assert (ours - exact).abs().max() < 0.05 * exact.abs().max()


@needs_compiler
def test_cache_growth_and_threads_do_not_change_the_logits():
    model = _random_model("qwen2")
    step = one_row_step.one_row_step_for(model, avx512_bf16=HAS_AVX512_BF16)
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


@needs_compiler
@pytest.mark.parametrize("avx512_bf16", BUILDS)
def test_matvec_matches_torch(avx512_bf16):
    ext = native_build.load_extension(avx512_bf16)
    torch.manual_seed(1)
    for rows, cols in ((7, 64), (97, 128), (5, 40)):  # row tails, a width that is not a multiple of 32
        w, x = torch.randn(rows, cols).bfloat16(), torch.randn(cols).bfloat16()
        torch.testing.assert_close(ext.matvec(w, x), w.float() @ x.float(), atol=1e-4, rtol=1e-4)
    with pytest.raises(RuntimeError, match="bf16 vector of w.size"):
        ext.matvec(torch.randn(4, 64).bfloat16(), torch.randn(32).bfloat16())


@needs_compiler
@pytest.mark.parametrize("avx512_bf16", BUILDS)
def test_norm_and_rotary_helpers_match_torch(avx512_bf16):
    ext = native_build.load_extension(avx512_bf16)
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


@needs_compiler
@pytest.mark.skipif(not HAS_AVX512_BF16, reason="the backend uses native kernels only with AVX-512 BF16")
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
    assert isinstance(native.decoder.one_row, one_row_step.OneRowStep)
    ours = native.generate(["hello there"], params)[0][0]
    backend = HFBackend(reference, tokenizer=tok, device="cpu")
    theirs = backend.generate(["hello there"], params)[0][0]
    assert backend.decoder.one_row is False  # float32: the Python step
    assert ours.num_tokens == theirs.num_tokens > 3 and ours.text == theirs.text


def test_fallbacks(monkeypatch, caplog, tmp_path):
    """Needs no compiler: the build is faked."""
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    model = _random_model("llama")
    assert one_row_step.one_row_step_for(_random_model("llama", torch.float32)) is None  # bf16 only
    monkeypatch.setenv("RAFTLAB_NATIVE", "0")
    assert one_row_step.one_row_step_for(model) is None
    monkeypatch.delenv("RAFTLAB_NATIVE")
    import raftlab.machine

    with monkeypatch.context() as m:  # a CPU without AVX-512 BF16: the portable loops are not used for speed
        m.setattr(raftlab.machine, "cpu_flags", lambda: frozenset({"avx2"}))
        assert native_build.load_extension() is None and one_row_step.one_row_step_for(model) is None

    from torch.utils import cpp_extension

    def no_compiler(**_: object):
        raise RuntimeError("Error building extension: c++: command not found")

    monkeypatch.setattr(cpp_extension, "load", no_compiler)
    monkeypatch.setattr(native_build, "_loaded", {})
    with caplog.at_level(logging.WARNING, logger="raftlab.engine.native_build"):
        assert one_row_step.one_row_step_for(model, avx512_bf16=False) is None
    assert "unavailable" in caplog.text and "command not found" in caplog.text


@needs_compiler
@pytest.mark.parametrize("avx512_bf16", BUILDS)
def test_native_cascade_attention_equals_attention_over_the_concatenation(avx512_bf16):
    import types

    from raftlab.engine.cascade_attention import CascadeCache, cascade_attention

    ext = native_build.load_extension(avx512_bf16)
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
        args = (module, query[rows], keys, values, None)  # the cache's buffers: rows index them
        ours, _ = cascade_attention(*args, scaling=dim**-0.5, cascade=cache, native=ext)
        theirs, _ = cascade_attention(*args, scaling=dim**-0.5, cascade=cache)  # torch's kernels, bf16
        exact = reference(rows)
        assert ours.dtype == bf and ours.shape == exact.shape
        assert (ours.float() - exact).abs().max() <= 1.5 * (theirs.float() - exact).abs().max() + 1e-3
        assert (ours.float() - exact).abs().max() < 0.02


@needs_compiler
@pytest.mark.parametrize("avx512_bf16", BUILDS)
def test_native_cascade_attention_as_prompts_join_and_rows_leave(avx512_bf16):
    """A continuous batch: a prompt joins a free slot after two steps (its rows have fewer own tokens than the
    others and come after them), then rows leave; the native step agrees with torch's kernels at every step."""
    import types

    from raftlab.engine.cascade_attention import CascadeCache, cascade_attention

    ext = native_build.load_extension(avx512_bf16)
    torch.manual_seed(0)
    n, heads, kv_heads, dim = 2, 6, 2, 32
    bf = torch.bfloat16

    def prefilled(prompts, length):
        keys, values = (torch.randn(prompts, kv_heads, length, dim).to(bf) for _ in range(2))
        mask = torch.ones(prompts, length, dtype=torch.long)
        mask[0, :2] = 0
        return types.SimpleNamespace(layers=[types.SimpleNamespace(keys=keys, values=values)]), mask

    cache = CascadeCache(*prefilled(2, 5), n, budget=8, slots=4, width=21, rows=8)
    module = types.SimpleNamespace(layer_idx=0)
    for step in range(6):
        if step == 2:
            cache.admit(*prefilled(1, 21), [3])
        if step == 4:
            cache.select_rows(torch.tensor([0, 2, 3, 4, 5]))
        rows = len(cache.slot)
        keys, values = cache.update(*(torch.randn(rows, kv_heads, 1, dim).to(bf) for _ in range(2)), 0)
        query = torch.randn(rows, heads, 1, dim).to(bf)
        ours, _ = cascade_attention(module, query, keys, values, None, scaling=dim**-0.5, cascade=cache, native=ext)
        theirs, _ = cascade_attention(module, query, keys, values, None, scaling=dim**-0.5, cascade=cache)
        assert (ours.float() - theirs.float()).abs().max() < 0.02, step
    assert cache.slot.tolist() == [0, 2, 3, 6, 7] and cache.attend.tolist() == [6, 6, 6, 4, 4]


def _prefilled_cache(model, prompt_length: int = 6, capacity: int = 16):
    """A cache of ``capacity`` positions holding the model's keys and values of a random prompt."""
    cache = growing_cache(model.config, capacity)
    with torch.inference_mode():
        model(input_ids=torch.randint(3, 97, (1, prompt_length)), use_cache=True, cache=cache)
    return cache


def _replaced(args: tuple, **changes) -> tuple:
    """``args`` of the extension's ``step`` with some replaced, by parameter name."""
    names = ("token", "position", "index", "embed", "inv_freq", "rope_scale", "layer_tensors", "keys", "values",
             "final_norm", "lm_head", "heads", "kv_heads", "head_dim", "eps", "scaling")
    out = list(args)
    for name, value in changes.items():
        out[names.index(name)] = value
    return tuple(out)


@needs_compiler
@pytest.mark.parametrize("avx512_bf16", BUILDS)
def test_the_step_rejects_wrong_arguments_before_touching_memory(avx512_bf16):
    model = _random_model("qwen3")  # q/k norms
    step = one_row_step.one_row_step_for(model, avx512_bf16=avx512_bf16)
    cache = _prefilled_cache(model)
    args = step.arguments(5, 6, cache)
    keys, values, layers = args[7], args[8], args[6]
    before = [t.clone() for t in keys + values]

    def with_layer(i: int, tensor):
        return [tensor if j == i else t for j, t in enumerate(layers)]

    def with_first(buffers, tensor):
        return [tensor] + list(buffers[1:])

    k0 = keys[0]
    wrong = {
        "wrong shape (a transposed k weight)": (dict(layer_tensors=with_layer(2, layers[2].t().contiguous())),
                                                "layer 0 k weight"),
        "wrong shape (inv_freq)": (dict(inv_freq=args[4][:-1]), "inv_freq"),
        "wrong shape (a missing layer tensor)": (dict(layer_tensors=layers[:-1]), "14 tensors"),
        "non-contiguous embedding": (dict(embed=args[3].t().contiguous().t()), "non-contiguous"),
        "non-contiguous key buffer": (dict(keys=with_first(keys, torch.zeros(*k0.shape[:-1], 2 * k0.shape[-1],
                                                                             dtype=k0.dtype)[..., ::2])),
                                      "non-contiguous"),
        "wrong dtype (float32 LM head)": (dict(lm_head=args[10].float()), "lm_head"),
        "wrong dtype (bf16 norm weight)": (dict(final_norm=args[9].bfloat16()), "final_norm"),
        "wrong batch size (two rows of keys)": (dict(keys=with_first(keys, torch.cat([k0, k0]))), "batch 1"),
        "wrong batch size (two rows of values)": (dict(values=with_first(values, torch.cat([values[0]] * 2))),
                                                  "batch 1"),
        "not on the CPU": (dict(embed=torch.empty(args[3].shape, dtype=torch.bfloat16, device="meta")), "CPU"),
        "no room in the cache": (dict(index=k0.shape[2]), "no room"),
        "token out of range": (dict(token=97), "out of range"),
        "heads not a multiple of kv_heads": (dict(kv_heads=3), "multiple of kv_heads"),
    }
    for case, (changes, message) in wrong.items():
        with pytest.raises(RuntimeError, match=message):
            step.extension.step(*_replaced(args, **changes))
            pytest.fail(f"accepted: {case}")
    # nothing written (compared bit for bit: the unused positions are uninitialised memory, NaNs included)
    assert all(torch.equal(a.view(torch.int16), b.view(torch.int16)) for a, b in zip(before, keys + values))
    assert step.extension.step(*args).shape == (1, 97)


@needs_compiler
@pytest.mark.parametrize("avx512_bf16", BUILDS)
def test_the_helpers_reject_wrong_arguments(avx512_bf16):
    ext = native_build.load_extension(avx512_bf16)
    bf = torch.bfloat16
    w = torch.randn(8, 64).to(bf)
    with pytest.raises(RuntimeError, match="contiguous 2-D"):
        ext.matvec(w.t().contiguous().t(), torch.randn(64).to(bf))
    with pytest.raises(RuntimeError, match="contiguous CPU bf16 vector"):
        ext.matvec(w, torch.randn(64))
    x = torch.randn(3, 1, 72).to(bf)
    with pytest.raises(RuntimeError, match="bf16"):
        ext.rms_norm_rows(x.float(), torch.rand(72), 1e-6)
    with pytest.raises(RuntimeError, match="non-contiguous"):
        ext.rms_norm_rows(x, torch.rand(144)[::2], 1e-6)
    with pytest.raises(RuntimeError, match="shape"):
        ext.rms_norm_rows(x, torch.rand(71), 1e-6)
    with pytest.raises(RuntimeError, match="rows"):
        ext.rms_norm_rows(torch.tensor(1.0, dtype=bf), torch.rand(1), 1e-6)
    qkv, cs = torch.randn(3, 1, 128).to(bf), torch.rand(3, 16)
    with pytest.raises(RuntimeError, match="cos and sin"):
        ext.rotary_heads(qkv, cs[:2], cs[:2], 6, 16)
    with pytest.raises(RuntimeError, match="cos must be"):
        ext.rotary_heads(qkv, cs.to(bf), cs, 6, 16)
    with pytest.raises(RuntimeError, match="heads x dim"):
        ext.rotary_heads(qkv, cs, cs, 9, 16)
    with pytest.raises(RuntimeError, match="dim even"):
        ext.rotary_heads(qkv, torch.rand(3, 15), torch.rand(3, 15), 6, 15)
    prompts, n, heads, kv_heads, tokens, dim, lp = 2, 2, 6, 2, 5, 32, 7
    rows = prompts * n
    q = torch.randn(rows, heads, 1, dim).to(bf)
    kv = torch.randn(rows, kv_heads, tokens, dim).to(bf)
    pv, slot = torch.randn(prompts, kv_heads, lp, dim).to(bf), torch.arange(rows)
    pk, bias = torch.randn(prompts, kv_heads, 1, dim // 2, 16, 2).to(bf), torch.zeros(prompts, 16)
    own = torch.full((rows,), tokens)
    ok = (q, kv, kv, pk, pv, bias, slot, slot, own, n)  # own_row: row r's own tokens in buffer row r
    assert ext.cascade_attention(*ok, dim ** -0.5).shape == (rows, 1, heads, dim)
    # rows in any order, their own tokens in any buffer rows (a continuous batch appends the rows that join)
    assert ext.cascade_attention(*ok[:6], slot.flip(0), slot.roll(1), *ok[8:], dim ** -0.5).shape == (
        rows, 1, heads, dim)
    bad = {"a 3-D query": (q[:, :, 0], *ok[1:]), "another batch size": (q[:2], *ok[1:]),
           "another head size": (q, kv[..., :16], kv[..., :16], *ok[3:]),
           "non-contiguous token rows": (q, kv.transpose(2, 3).contiguous().transpose(2, 3), *ok[2:]),
           "float32 prompt keys": (q, kv, kv, pk.float(), *ok[4:]),
           "unpacked prompt keys": (q, kv, kv, pv, *ok[4:]),
           "more prompt values than keys": (*ok[:4], torch.randn(prompts, kv_heads, 17, dim).to(bf), *ok[5:]),
           "another prompt count in the bias": (*ok[:5], bias[:1], *ok[6:]),
           "a bf16 bias": (*ok[:5], bias.to(bf), *ok[6:]),
           "too few slots": (*ok[:6], slot[:2], *ok[7:]),
           "a slot twice": (*ok[:6], torch.zeros_like(slot), *ok[7:]),
           "slots outside the grid": (*ok[:6], slot + 1, *ok[7:]),
           "too few own rows": (*ok[:7], slot[:2], own, n),
           "own rows outside the buffers": (*ok[:7], slot + 1, own, n),
           "too few own-token counts": (*ok[:8], own[:2], n),
           "no own token": (*ok[:8], torch.zeros_like(own), n),
           "more own tokens than keys": (*ok[:8], own + 1, n)}
    for case, arguments in bad.items():
        with pytest.raises(RuntimeError, match="cascade_attention"):
            ext.cascade_attention(*arguments, dim ** -0.5)
            pytest.fail(f"accepted: {case}")


@needs_compiler
def test_the_native_step_releases_the_gil():
    """A pure-Python counter thread advances while the main thread runs native steps. The switch interval is
    raised far beyond the test's deadline, so the main thread never hands the GIL over on its own, and the steps'
    logits are kept (freeing a tensor releases the GIL): the counter can move only while a step has released it."""
    model = _random_model("llama")
    step = one_row_step.one_row_step_for(model, avx512_bf16=False)
    args = step.arguments(5, 6, _prefilled_cache(model))
    ready, stop, count = threading.Event(), threading.Event(), [0]

    def counter() -> None:
        ready.set()
        while not stop.is_set():
            count[0] += 1
            time.sleep(0.0005)  # gives the GIL back, so the main thread never waits for it after a step

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    thread = threading.Thread(target=counter, daemon=True)
    try:
        thread.start()
        assert ready.wait(timeout=30), "the counter thread did not start"
        deadline = time.monotonic() + 30
        before, kept = count[0], []
        while count[0] == before and time.monotonic() < deadline:
            kept.append(step.extension.step(*args))
        assert count[0] > before, f"the counter never advanced during {len(kept)} native steps: the GIL is held"
    finally:
        sys.setswitchinterval(interval)
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
