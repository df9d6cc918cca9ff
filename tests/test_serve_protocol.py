"""`raftlab serve` speaks the OpenAI protocol the way real clients use it: prompt forms, echo scoring with and without
generation, streaming, max_completion_tokens, content parts, refused fields, byte-exact offsets, tokenizer endpoints."""

from __future__ import annotations

import json

import httpx
import pytest
import torch


@pytest.fixture(scope="module")
def client(served_hf):
    from openai import OpenAI

    return OpenAI(base_url=served_hf, api_key="unused", max_retries=0)


def _model_logprobs(hf, ids: list[int]) -> list[float]:
    """transformers' log-probs of ids[1:] given the ids before them."""
    with torch.no_grad():
        logp = torch.log_softmax(hf.model(torch.tensor([ids])).logits[0].float(), -1)
    return [logp[i - 1, ids[i]].item() for i in range(1, len(ids))]


def test_prompt_as_string_list_token_ids_and_token_id_lists(client, hf):
    ids = hf.tokenizer("The answer is", add_special_tokens=True).input_ids
    for prompt, n_prompts in (("The answer is", 1), (["The answer is", "Hello"], 2), (ids, 1), ([ids, ids[:2]], 2)):
        r = client.completions.create(model="tiny", prompt=prompt, max_tokens=3, temperature=0.0)
        assert len(r.choices) == n_prompts and all(isinstance(c.text, str) for c in r.choices)
    text = client.completions.create(model="tiny", prompt="The answer is", max_tokens=4, temperature=0.0)
    same = client.completions.create(model="tiny", prompt=ids, max_tokens=4, temperature=0.0)
    assert text.choices[0].text == same.choices[0].text  # the same ids reach the model either way


def test_echo_scores_the_given_token_ids_with_and_without_generation(client, hf):
    """lm-eval's loglikelihood request: token ids, echo, logprobs=1, max_tokens=1; it reads token_logprobs[ctxlen:-1]."""
    ctx = hf.tokenizer("Question: 2 + 3?", add_special_tokens=True).input_ids
    cont = hf.tokenizer(" The answer is 5.", add_special_tokens=False).input_ids
    expected = _model_logprobs(hf, ctx + cont)
    for max_tokens in (0, 1):
        r = client.completions.create(model="tiny", prompt=ctx + cont, echo=True, logprobs=1, max_tokens=max_tokens,
                                      temperature=0.0)
        lp = r.choices[0].logprobs
        assert lp.token_logprobs[0] is None
        assert len(lp.token_logprobs) == len(ctx + cont) + max_tokens
        assert lp.token_logprobs[1:len(ctx + cont)] == pytest.approx(expected, abs=1e-4)
        picked = lp.token_logprobs[len(ctx):len(ctx + cont)]  # lm-eval: [ctxlen:-1] with one generated token
        assert sum(picked) == pytest.approx(sum(expected[len(ctx) - 1:]), abs=1e-3)
        assert all(isinstance(t, dict) and t for t in lp.top_logprobs[1:])


def test_streaming_completions_and_chat_with_usage(client):
    chunks = list(client.completions.create(model="tiny", prompt="Hello", max_tokens=5, temperature=0.0, stream=True,
                                            stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    plain = client.completions.create(model="tiny", prompt="Hello", max_tokens=5, temperature=0.0)
    assert text == plain.choices[0].text and chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    chat = list(client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}],
                                               max_tokens=4, temperature=0.0, stream=True))
    content = "".join(c.choices[0].delta.content or "" for c in chat if c.choices)
    ref = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
                                         temperature=0.0)
    assert content == ref.choices[0].message.content


def test_max_completion_tokens_and_content_parts(client):
    r = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}], temperature=0.0,
                                       max_completion_tokens=3)
    assert r.usage.completion_tokens <= 3
    parts = client.chat.completions.create(
        model="tiny", temperature=0.0, max_tokens=4,
        messages=[{"role": "user", "content": [{"type": "text", "text": "H"}, {"type": "text", "text": "i"}]}])
    same = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}],
                                          temperature=0.0, max_tokens=4)
    assert parts.choices[0].message.content == same.choices[0].message.content


def test_refused_fields_unknown_model_and_empty_input(served_hf):
    with httpx.Client(base_url=served_hf) as h:
        for body in ({"frequency_penalty": 0.5}, {"logit_bias": {"5": 10}}, {"suffix": "x"}, {"best_of": 3},
                     {"guided_json": {}}):
            r = h.post("/completions", json={"model": "tiny", "prompt": "x", **body})
            assert r.status_code == 400 and "error" in r.json(), body
        r = h.post("/completions", json={"model": "gpt-9", "prompt": "x"})
        assert r.status_code == 404 and r.json()["error"]["param"] == "model"
        assert h.post("/completions", json={"model": "tiny", "prompt": ""}).status_code == 400
        assert h.post("/chat/completions", json={"model": "tiny", "messages": []}).status_code == 400
        assert h.post("/chat/completions", json={"model": "tiny", "messages": [{"role": "user", "content": "x"}],
                                                 "response_format": {"type": "json_object"}}).status_code == 400


def test_offsets_and_scores_are_byte_exact_with_multibyte_characters(client, hf):
    text = "naïve café 😀 ok"
    lp = client.completions.create(model="tiny", prompt=text, echo=True, logprobs=0, max_tokens=0).choices[0].logprobs
    assert "".join(lp.tokens) == text
    assert all(text[o:].startswith(t) for o, t in zip(lp.text_offset, lp.tokens))
    assert text.index(" ok") == 12 and 12 in lp.text_offset  # not 13: the emoji's byte tokens do not shift it
    emoji = "😀 smile"
    ids = hf.encode_prompt(emoji)
    r = client.completions.create(model="tiny", prompt=emoji, echo=True, logprobs=0, max_tokens=0).choices[0]
    assert r.text == emoji and r.logprobs.token_logprobs[1:] == pytest.approx(_model_logprobs(hf, ids), abs=1e-4)


def test_tokenizer_endpoints(served_hf, hf):
    root = served_hf.removesuffix("/v1")
    with httpx.Client(base_url=root) as h:
        info = h.get("/tokenizer_info").json()
        assert info["eos_token"] == hf.tokenizer.eos_token
        ids = h.post("/tokenize", json={"prompt": "Hello world", "add_special_tokens": False}).json()["tokens"]
        assert ids == hf.tokenizer("Hello world", add_special_tokens=False).input_ids
        assert h.post("/detokenize", json={"tokens": ids}).json()["prompt"] == "Hello world"


def test_api_key_body_size_and_context_limits(hf):
    from fastapi.testclient import TestClient

    from raftlab.serve import create_app

    guarded = TestClient(create_app(hf, "tiny", api_key="s3cret", max_body_bytes=2000))
    body = {"model": "tiny", "prompt": "Hi", "max_tokens": 2, "temperature": 0.0}
    assert guarded.post("/v1/completions", json=body).status_code == 401
    assert guarded.post("/v1/completions", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = guarded.post("/v1/completions", json=body, headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and ok.json()["choices"]
    big = guarded.post("/v1/completions", json={**body, "prompt": "x " * 2000},
                       headers={"Authorization": "Bearer s3cret"})
    assert big.status_code == 413
    open_app = TestClient(create_app(hf, "tiny"))
    window = hf.model.config.max_position_embeddings
    r = open_app.post("/v1/completions", json={"model": "tiny", "prompt": "Hi", "max_tokens": window})
    assert r.status_code == 400 and "maximum context length" in r.json()["error"]["message"]
    r = open_app.post("/v1/chat/completions", json={"model": "tiny", "max_tokens": window,
                                                    "messages": [{"role": "user", "content": "Hi"}]})
    assert r.status_code == 400


def test_a_chunked_body_counts_against_the_body_limit():
    """A chunked body has no Content-Length: the limit counts its bytes as they arrive."""
    from raftlab.serve import serve_in_thread
    from tests._backend_helpers import ScriptedBackend

    def chunked(body: dict):  # a generator body: httpx streams it chunked, without Content-Length
        data = json.dumps(body).encode()
        yield from (data[i : i + 500] for i in range(0, len(data), 500))

    url, stop = serve_in_thread(ScriptedBackend(lambda p, j: "ok"), model_name="s", max_body_bytes=2000)
    try:
        with httpx.Client(base_url=url, timeout=30, headers={"Content-Type": "application/json"}) as h:
            ok = h.post("/completions", content=chunked({"model": "s", "prompt": "Hi " * 100, "max_tokens": 2}))
            assert ok.request.headers["transfer-encoding"] == "chunked" and "content-length" not in ok.request.headers
            assert ok.status_code == 200 and ok.json()["choices"][0]["text"] == "ok"
            big = h.post("/completions", content=chunked({"model": "s", "prompt": "x " * 2000, "max_tokens": 2}))
            assert big.status_code == 413 and "over the limit of 2000" in big.json()["error"]["message"]
    finally:
        stop()


def test_exposed_host_without_key_is_warned_about(caplog):
    from raftlab.cli.serve_cmd import warn_if_exposed

    with caplog.at_level("WARNING", logger="raftlab.serve"):
        assert warn_if_exposed("0.0.0.0", None) and "without --api-key" in caplog.text
    assert not warn_if_exposed("127.0.0.1", None) and not warn_if_exposed("::1", None)
    assert not warn_if_exposed("localhost", None) and not warn_if_exposed("0.0.0.0", "key")
