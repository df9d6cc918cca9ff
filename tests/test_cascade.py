"""Cascade attention and the CPU inference kernels give the same samples as the model's own attention."""

from __future__ import annotations

import pytest
import torch

from raftlab.backends.base import SamplingParams

pytestmark = pytest.mark.slow

PROMPTS = ["Question: what is 2 + 3?\nAnswer:", "Q: a much longer prompt with more words in it, so the batch is "
           "padded on the left for the shorter prompts.\nA:", "Hi"]


def _backend(**options):
    from raftlab.backends.hf import HFBackend

    return HFBackend("tiny", batch_size=64, **options)


def test_cascade_is_used_and_matches_repeated_caches():
    cascade, plain = _backend(), _backend(cascade=False)
    assert cascade.decoder.cascade and not plain.decoder.cascade
    params = SamplingParams(n=5, temperature=0.9, max_new_tokens=24, seed=7, stop=("5",))
    a, b = cascade.generate(PROMPTS, params), plain.generate(PROMPTS, params)
    assert [[g.text for g in row] for row in a] == [[g.text for g in row] for row in b]
    assert [[g.finish_reason for g in row] for row in a] == [[g.finish_reason for g in row] for row in b]
    # rows finished at different steps (so select_rows ran) and the model's attention setting came back
    assert len({g.num_tokens for row in a for g in row}) > 1
    assert cascade.model.config._attn_implementation == plain.model.config._attn_implementation


def test_a_continuous_batch_gives_the_samples_of_one_batch():
    """Two prompts decoding at a time, the next ones joining as samples finish (with their shared prefix
    prefilled once), give the samples of all prompts decoded together, and of the model's own attention."""
    prompts = [f"Instruction: answer the question below carefully and briefly.\nQuestion {i}: what is {i} + "
               f"{3 * i}? " + "word " * (i % 5) for i in range(11)]
    params = SamplingParams(n=3, temperature=0.9, max_new_tokens=20, seed=3, stop=("5",))
    together = _backend(dtype=torch.float32).generate(prompts, params)
    backend = _backend(dtype=torch.float32)
    backend.batch_size = 2
    continuous = backend.generate(prompts, params)
    backend = _backend(dtype=torch.float32, cascade=False)
    backend.batch_size = 2
    batches = backend.generate(prompts, params)
    texts = [[[g.text for g in row] for row in result] for result in (together, continuous, batches)]
    assert texts[0] == texts[1] == texts[2]
    assert [[g.finish_reason for g in row] for row in continuous] == [[g.finish_reason for g in row]
                                                                       for row in together]
    assert len({g.num_tokens for row in continuous for g in row}) > 3  # samples ended at many different steps


def test_cascade_attention_equals_attention_over_the_concatenation():
    import types

    from raftlab.engine.cascade_attention import CascadeCache, cascade_attention

    torch.manual_seed(0)
    p, n, heads, kv_heads, dim, lp, lg = 3, 4, 6, 2, 8, 7, 5
    prompt_k, prompt_v = torch.randn(p, kv_heads, lp, dim), torch.randn(p, kv_heads, lp, dim)
    mask = torch.ones(p, lp, dtype=torch.long)
    mask[0, :3] = 0  # left padding of the first prompt
    layer = types.SimpleNamespace(keys=prompt_k, values=prompt_v)
    cache = CascadeCache(types.SimpleNamespace(layers=[layer]), mask, n, budget=lg)
    own_k, own_v = torch.randn(p * n, kv_heads, lg, dim), torch.randn(p * n, kv_heads, lg, dim)
    for t in range(lg):
        keys, values = cache.update(own_k[:, :, t : t + 1], own_v[:, :, t : t + 1], 0)
    query = torch.randn(p * n, heads, 1, dim)

    def reference(rows):
        k = torch.cat([prompt_k.repeat_interleave(n, 0), own_k], 2)[rows].repeat_interleave(heads // kv_heads, 1)
        v = torch.cat([prompt_v.repeat_interleave(n, 0), own_v], 2)[rows].repeat_interleave(heads // kv_heads, 1)
        m = torch.cat([mask.repeat_interleave(n, 0), torch.ones(p * n, lg, dtype=torch.long)], 1)[rows].bool()
        out = torch.nn.functional.scaled_dot_product_attention(query[rows], k, v, attn_mask=m[:, None, None, :])
        return out.transpose(1, 2)

    module = types.SimpleNamespace(layer_idx=0)
    out, _ = cascade_attention(module, query, keys, values, None, scaling=dim**-0.5, cascade=cache)
    assert torch.allclose(out, reference(torch.arange(p * n)), atol=1e-5)
    keep = torch.tensor([0, 3, 5, 11])  # rows that are still generating
    cache.select_rows(keep)
    out, _ = cascade_attention(module, query[keep], keys, values, None, scaling=dim**-0.5,
                               cascade=cache)
    assert torch.allclose(out, reference(keep), atol=1e-5)


def test_fused_rmsnorm_matches_the_model_and_packing_keeps_outputs():
    from raftlab.engine.cpu_kernels import fuse_rmsnorms, pack_linear_layers, packing_available
    from raftlab.models import load_model

    model, tok = load_model("tiny", dtype=torch.float32, device="cpu")
    ids = tok(["Question: what is 2 + 3?"], return_tensors="pt").input_ids
    with torch.inference_mode():
        before = model(ids).logits
        assert fuse_rmsnorms(model) > 0
        after = model(ids).logits
    assert torch.allclose(before, after, atol=1e-4)
    if not packing_available():
        pytest.skip("this CPU has no bf16 instructions (prepacked bf16 linears are not used)")
    model = model.to(torch.bfloat16)
    with torch.inference_mode():
        plain = model(ids).logits
        assert pack_linear_layers(model) > 0
        packed = model(ids).logits
    assert torch.equal(plain, packed)


def test_the_kv_budget_counts_every_prompt_slot_of_a_continuous_batch():
    """Under cascade attention a prompt in flight may hold PROMPT_SLOTS prompt caches plus its samples' tokens;
    the model's own attention holds every sample's copy of the prompt."""
    from raftlab.engine.decoder import PROMPT_SLOTS

    cascade, plain = _backend(dtype=torch.float32), _backend(dtype=torch.float32, cascade=False)
    cfg = cascade.model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    per_position = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * head_dim * 4  # fp32 keys and values
    megabytes, longest, n, new = 64, 300, 4, 50
    assert cascade.decoder.prompts_within_kv_budget(megabytes, longest, n, new) == \
        megabytes * 2**20 // (per_position * (PROMPT_SLOTS * longest + n * new))
    assert plain.decoder.prompts_within_kv_budget(megabytes, longest, n, new) == \
        megabytes * 2**20 // (per_position * n * (longest + new))
