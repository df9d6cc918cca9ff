"""The engine's vectorised sampler: right distribution, never a zero-probability token, and each row's draw
depends only on its own seed and step."""

from __future__ import annotations

import torch

from raftlab.engine.sampling import sample_rows, step_uniforms


def test_uniforms_are_uniform_and_independent_of_the_batch():
    seeds = torch.arange(20000, dtype=torch.int64) * 7919 + 3
    u = step_uniforms(seeds, 5)
    assert u.min() >= 0 and u.max() < 1
    counts = torch.histc(u.float(), bins=10, min=0, max=1)
    assert (counts - 2000).abs().max() < 200  # ~4.5 standard deviations
    assert torch.equal(step_uniforms(seeds[123:124], 5), u[123:124])  # alone or in a batch: the same draw
    assert not torch.equal(step_uniforms(seeds, 6), u)  # another step, other draws


def test_rows_follow_their_distribution_and_skip_zero_probability_tokens():
    probs = torch.tensor([0.1, 0.0, 0.2, 0.7, 0.0]).repeat(30000, 1)
    seeds = torch.randint(0, 2**62, (30000,), generator=torch.Generator().manual_seed(0))
    chosen = sample_rows(probs, seeds, 0)
    freq = torch.bincount(chosen, minlength=5).double() / len(chosen)
    assert freq[1] == 0 and freq[4] == 0
    assert torch.allclose(freq, probs[0].double(), atol=0.01)


def test_a_rows_sample_does_not_depend_on_the_other_rows():
    logits = torch.randn(6, 50, generator=torch.Generator().manual_seed(1))
    probs = torch.softmax(logits, dim=-1)
    seeds = torch.tensor([11, 22, 33, 44, 55, 66])
    together = sample_rows(probs, seeds, 3)
    alone = torch.cat([sample_rows(probs[i : i + 1], seeds[i : i + 1], 3) for i in range(6)])
    assert torch.equal(together, alone)
    assert torch.equal(sample_rows(probs[[5, 0]], seeds[[5, 0]], 3), together[[5, 0]])


def test_a_shared_prompt_prefix_is_prefilled_once_with_the_same_result(hf):
    from raftlab.backends.base import SamplingParams
    from raftlab.engine.prefill import MIN_SHARED_PREFIX

    demos = "Question: Ann has 2 pens and buys 3 more. How many pens? The answer is 5.\n\n" * 3
    prompts = [demos + f"Question: Tom has {i} apples and eats one. How many apples?" for i in (3, 12, 7)]
    encoded = hf._encode(prompts)
    decoder = hf.decoder
    model, shapes = decoder.model, []

    def recording(**kw):
        shapes.append(tuple(kw["input_ids"].shape))
        return model(**kw)

    recording.config = model.config
    decoder.model = recording
    try:
        cache, logits, attn, _ = decoder.prefill(encoded)
    finally:
        decoder.model = model
    shared = shapes[0][1]
    assert shapes[0][0] == 1 and shared >= MIN_SHARED_PREFIX  # the prefix, once
    assert shapes[1] == (3, max(len(e) for e in encoded) - shared)  # then each prompt's own tokens
    alone = [decoder.prefill([e])[1] for e in encoded]
    assert torch.allclose(logits, torch.cat(alone), atol=2e-3)  # float sums in another order
    greedy = SamplingParams(n=1, temperature=0.0, max_new_tokens=12)
    together = [row[0].text for row in hf.generate(prompts, greedy)]
    assert together == [hf.generate([p], greedy)[0][0].text for p in prompts]
