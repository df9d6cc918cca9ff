"""The lean decoding step computes what the model's forward computes (logits of one step, whole generations)."""

from __future__ import annotations

import copy

import pytest
import torch

from raftlab.backends.base import SamplingParams
from raftlab.engine.decode_step import decode_step_for
from raftlab.engine.kv_cache import growing_cache

pytestmark = pytest.mark.slow


def _random_model(kind: str, dtype=torch.float32):
    import transformers

    torch.manual_seed(0)
    config_class = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config,
                    "qwen3": transformers.Qwen3Config}[kind]
    config = config_class(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=128,
                          attn_implementation="sdpa")
    return transformers.AutoModelForCausalLM.from_config(config).to(dtype).eval()


def _one_step_both_ways(model, ids, mask):
    """Prefill ``ids`` (left-padded per ``mask``), then one decoding step through the model's forward and
    through :class:`DecodeStep`, each on its own copy of the cache."""
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = growing_cache(model.config)
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, cache=cache)
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        pos = positions[:, -1:] + 1
        full = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], 1)
        theirs = model(input_ids=nxt, attention_mask=full, position_ids=pos, use_cache=True,
                       cache=copy.deepcopy(cache)).logits[:, -1].float()
        step = decode_step_for(model)
        assert step is not None
        ours = step(nxt, pos, copy.deepcopy(cache), step.padding_mask(full))
    return theirs, ours


@pytest.mark.parametrize("kind", ["llama", "qwen2", "qwen3"])
def test_one_step_equals_the_models_forward_with_padding(kind):
    model = _random_model(kind)
    ids = torch.randint(3, 97, (3, 9))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # left padding
    mask[2, :1] = 0
    theirs, ours = _one_step_both_ways(model, ids, mask)
    assert torch.allclose(theirs, ours, atol=1e-5, rtol=1e-5)


def test_one_row_without_padding_needs_no_mask():
    model = _random_model("llama")
    ids = torch.randint(3, 97, (1, 6))
    theirs, ours = _one_step_both_ways(model, ids, torch.ones_like(ids))
    assert decode_step_for(model).padding_mask(torch.ones(1, 7)) is None
    assert torch.allclose(theirs, ours, atol=1e-5, rtol=1e-5)


def test_unsupported_models_keep_their_forward():
    model = _random_model("llama")
    model.config._attn_implementation = "flex_attention"
    assert decode_step_for(model) is None


PROMPTS = ["Question: what is 2 + 3?\nAnswer:", "Q: a much longer prompt with more words in it, so the batch is "
           "padded on the left for the shorter prompts.\nA:", "Hi"]


@pytest.mark.parametrize("n", [1, 4])
def test_generations_are_those_of_the_models_forward(n):
    from raftlab.backends.hf import HFBackend

    lean, plain = HFBackend("tiny", batch_size=64), HFBackend("tiny", batch_size=64)
    plain.decoder.decode_step = None
    assert lean.decoder.decode_step is not None
    params = SamplingParams(n=n, temperature=0.9, max_new_tokens=20, seed=3, stop=("5",))
    a, b = lean.generate(PROMPTS, params), plain.generate(PROMPTS, params)
    assert [[g.text for g in row] for row in a] == [[g.text for g in row] for row in b]
    assert len({g.num_tokens for row in a for g in row}) > 1  # rows finished at different steps


def test_bf16_step_with_fused_products_is_within_rounding():
    from raftlab.engine.cpu_kernels import packing_available, speed_up_for_cpu_inference

    if not packing_available():
        pytest.skip("no oneDNN packed bf16 kernels / bf16 instructions on this CPU")
    model = _random_model("llama")
    reference = copy.deepcopy(model)  # float32, the model's own forward
    model = model.to(torch.bfloat16)
    speed_up_for_cpu_inference(model)
    assert decode_step_for(model).fused
    ids = torch.randint(3, 97, (3, 9))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0
    theirs, ours = _one_step_both_ways(model, ids, mask)  # both in bf16: forward vs lean step
    exact, _ = _one_step_both_ways(reference, ids, mask)
    # the fused products round once where the forward rounds twice: no further from float32 than the forward
    assert (ours - exact).abs().max() <= 1.5 * (theirs - exact).abs().max() + 1e-3
    assert (ours - theirs).abs().max() < 0.1 * exact.abs().max()
