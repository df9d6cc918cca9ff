"""The same contract for every backend: hf directly, openai (chat and completions) over `raftlab serve` on
loopback, and vllm where installed."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from raftlab.backends import get_backend, parse_spec
from raftlab.backends.base import SamplingParams
from raftlab.backends.hf import HFBackend

PROMPTS = ["Question: How many apples are left?\nAnswer:", "Hello", "The answer is"]


@pytest.fixture(scope="module")
def server(served_hf):
    return served_hf


@pytest.fixture(params=["hf", "openai-chat", "openai-completions", "vllm"])
def backend(request, hf, server):
    if request.param == "hf":
        return hf
    if request.param == "vllm":
        if importlib.util.find_spec("vllm") is None or not torch.cuda.is_available():
            pytest.skip("vllm backend needs the vllm extra and a GPU")
        return get_backend("vllm:tiny")
    api = request.param.split("-")[1]
    return get_backend(f"openai:tiny@{server}", api=api)


@pytest.mark.slow
def test_generate_shape_and_limits(backend):
    out = backend.generate(PROMPTS, SamplingParams(n=3, temperature=0.9, max_new_tokens=6, seed=1))
    assert len(out) == len(PROMPTS)
    assert all(len(row) == 3 for row in out)
    assert all(isinstance(g.text, str) for row in out for g in row)
    if backend.name == "hf":
        assert all(g.num_tokens <= 6 for row in out for g in row)


def test_greedy_matches_transformers_generate(backend, hf):
    """Every backend (the hf backend's padded batch loop included) decodes greedily as transformers' own
    ``generate`` does on each prompt alone: a reference that none of them shares."""
    tok, model = hf.tokenizer, hf.model
    expected = []
    for p in PROMPTS:
        ids = tok(p, return_tensors="pt")
        ref = model.generate(**ids, max_new_tokens=8, do_sample=False)
        expected.append([tok.decode(ref[0, ids.input_ids.shape[1]:], skip_special_tokens=True)])
    out = backend.generate(PROMPTS, SamplingParams(n=1, temperature=0.0, max_new_tokens=8))
    assert [[g.text for g in row] for row in out] == expected


def test_seeded_sampling_is_reproducible(backend):
    params = SamplingParams(n=4, temperature=1.0, max_new_tokens=8, seed=7)
    a = [[g.text for g in row] for row in backend.generate(PROMPTS, params)]
    b = [[g.text for g in row] for row in backend.generate(PROMPTS, params)]
    assert a == b
    assert len({t for row in a for t in row}) > 1  # temperature 1.0 on a random model varies


def test_stop_strings_cut_the_text(backend, hf):
    free = hf.generate(PROMPTS, SamplingParams(n=1, temperature=0.0, max_new_tokens=12))
    # use a piece of the free-running output as the stop string
    text = free[0][0].text
    stop = text[3:5]
    assert stop
    cut = backend.generate(PROMPTS[:1], SamplingParams(n=1, temperature=0.0, max_new_tokens=12, stop=(stop,)))
    assert cut[0][0].text == text[: text.find(stop)]


def test_score_matches_a_manual_forward_pass(backend, hf):
    prompts, conts = ["Hello world", "Question: 2 + 3?"], [" The answer is 5.", " 5"]
    scores = backend.score(prompts, conts)
    tok, model = hf.tokenizer, hf.model
    for p, c, s in zip(prompts, conts, scores):
        full = tok(p + c).input_ids
        n_ctx = len(tok(p).input_ids)
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([full])).logits[0], -1)
        manual = sum(logp[i - 1, full[i]].item() for i in range(n_ctx, len(full)))
        assert s.total == pytest.approx(manual, abs=1e-4)
        assert len(s.token_logprobs) == len(full) - n_ctx


def test_hf_samples_do_not_depend_on_batch_composition(hf):
    params = SamplingParams(n=3, temperature=1.0, max_new_tokens=8, seed=3)
    together = hf.generate(PROMPTS, params)
    alone = hf.generate(PROMPTS[1:2], params)
    assert [g.text for g in together[1]] == [g.text for g in alone[0]]


@pytest.mark.slow
def test_real_openai_client_talks_to_raftlab_serve(server):
    from openai import OpenAI

    client = OpenAI(base_url=server, api_key="unused")
    assert [m.id for m in client.models.list().data] == ["tiny"]
    chat = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}], n=2,
                                          temperature=0.8, max_tokens=5, seed=1)
    assert len(chat.choices) == 2 and chat.usage.completion_tokens > 0
    comp = client.completions.create(model="tiny", prompt="Hello", max_tokens=0, echo=True, logprobs=1)
    assert comp.choices[0].logprobs.token_logprobs[0] is None
    assert all(lp < 0 for lp in comp.choices[0].logprobs.token_logprobs[1:])


@pytest.mark.slow
def test_api_key_is_never_recorded(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-123")
    b = get_backend("openai:gpt-x@https://api.example.invalid/v1")
    assert "sk-secret" not in repr(b) and "sk-secret" not in str(b.describe())


@pytest.mark.slow
def test_missing_api_key_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("RAFTLAB_API_KEY", raising=False)
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        get_backend("openai:gpt-x@https://api.example.invalid/v1")


@pytest.mark.slow
def test_parse_spec():
    assert parse_spec("hf:tiny") == ("hf", "tiny", None)
    assert parse_spec("smollm2") == ("hf", "smollm2", None)
    assert parse_spec("openai:m@http://127.0.0.1:9/v1") == ("openai", "m", "http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match="names no model"):
        parse_spec("hf:")


@pytest.mark.slow
def test_hf_score_without_bos_and_across_a_merging_boundary():
    nobos = HFBackend("tiny-nobos", score_batch_size=2)
    tok, model = nobos.tokenizer, nobos.model
    assert tok("hello").input_ids[0] != tok.bos_token_id
    # empty prompt and no BOS: the first continuation token is conditioned on EOS
    [empty] = nobos.score([""], ["the answer"])
    ids = tok("the answer").input_ids
    assert len(empty.token_logprobs) == len(ids)
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([[tok.eos_token_id] + ids])).logits[0], -1)
    assert empty.total == pytest.approx(sum(logp[i, t].item() for i, t in enumerate(ids)), abs=1e-4)
    # a prompt ending mid-word: the merged token is scored as part of the continuation
    prompt, cont = "The ans", "wer is 5"
    full, ctx = tok(prompt + cont).input_ids, tok(prompt).input_ids
    common = next(i for i in range(len(full)) if i >= len(ctx) or ctx[i] != full[i])
    [s] = nobos.score([prompt], [cont])
    assert len(s.token_logprobs) == len(full) - common and "".join(s.tokens).endswith("is 5")
