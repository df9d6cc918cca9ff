"""`raftlab serve` API with the real openai client over loopback: n, seed, stop, logprobs, echo scoring, errors."""

from __future__ import annotations

import math

import httpx
import pytest
import torch


@pytest.fixture(scope="module")
def url(served_hf):
    return served_hf


@pytest.fixture(scope="module")
def client(url):
    from openai import OpenAI

    return OpenAI(base_url=url, api_key="unused", max_retries=0)


def _manual_logprobs(hf, prompt, text):
    tok, model = hf.tokenizer, hf.model
    full, ctx = tok(prompt + text).input_ids, tok(prompt).input_ids
    n_ctx = 0  # a token that merges across the boundary belongs to the continuation
    while n_ctx < min(len(ctx), len(full)) and ctx[n_ctx] == full[n_ctx]:
        n_ctx += 1
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([full])).logits[0].float(), -1)
    return [logp[i - 1, full[i]].item() for i in range(n_ctx, len(full))]


@pytest.mark.slow
def test_completion_logprobs_are_the_model_logprobs_of_the_returned_text(client, hf):
    r = client.completions.create(model="tiny", prompt="Hello", max_tokens=6, n=2, temperature=1.0, seed=3,
                                  logprobs=2)
    assert len(r.choices) == 2
    for c in r.choices:
        lp = c.logprobs
        assert len(lp.tokens) == len(lp.token_logprobs)  # tokens may be partial UTF-8 bytes (then shown as U+FFFD)
        assert lp.token_logprobs == pytest.approx(_manual_logprobs(hf, "Hello", c.text), abs=1e-4)
        # offsets are exact character offsets into prompt + text (a token merging across the boundary starts
        # inside the prompt), and the tokens spell the text from there
        assert lp.text_offset[0] <= len("Hello")
        assert "".join(lp.tokens) == ("Hello" + c.text)[lp.text_offset[0]:]
        for chosen, top in zip(lp.token_logprobs, lp.top_logprobs):
            # the top-2 (fewer where two byte tokens decode to the same text) bound the chosen token's log-prob
            assert 1 <= len(top) <= 2 and max(top.values()) >= chosen - 1e-6


@pytest.mark.slow
def test_chat_logprobs_with_top_alternatives(client):
    r = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=5,
                                       temperature=0.0, logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert content and len(content) <= 5
    for t in content:
        assert t.logprob <= 0 and 1 <= len(t.top_logprobs) <= 3
        # greedy decoding picks the most likely token, which heads the top list
        assert t.top_logprobs[0].logprob == pytest.approx(max(a.logprob for a in t.top_logprobs))
    plain = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}],
                                           max_tokens=5, temperature=0.0)
    assert plain.choices[0].logprobs is None and plain.choices[0].message.content == r.choices[0].message.content


@pytest.mark.slow
def test_seed_n_and_stop(client):
    kw = dict(model="tiny", prompt="The answer is", max_tokens=8, n=3, temperature=1.0)
    a = client.completions.create(seed=5, **kw)
    b = client.completions.create(seed=5, **kw)
    assert [c.text for c in a.choices] == [c.text for c in b.choices]
    greedy = client.completions.create(model="tiny", prompt="The answer is", max_tokens=8, temperature=0.0)
    text = greedy.choices[0].text
    stop = text[2:4]
    cut = client.completions.create(model="tiny", prompt="The answer is", max_tokens=8, temperature=0.0, stop=stop)
    assert cut.choices[0].text == text[: text.find(stop)] and cut.choices[0].finish_reason == "stop"


@pytest.mark.slow
def test_echo_scoring_sums_to_the_backend_score(client, hf):
    """The echoed per-token log-probs add up to ``hf.score`` of the same text: the continuation's tokens (those
    ending after the prompt, a merged boundary token included) to the continuation's score, all of them to the
    whole text's score after an empty prompt."""
    prompt, cont = "Question: 2 + 3?", " The answer is 5."
    r = client.completions.create(model="tiny", prompt=prompt + cont, max_tokens=0, echo=True, logprobs=1)
    lp = r.choices[0].logprobs
    assert "".join(lp.tokens) == prompt + cont
    assert lp.token_logprobs[0] is None and all(math.isfinite(x) and x < 0 for x in lp.token_logprobs[1:])
    [part], [whole] = hf.score([prompt], [cont]), hf.score([""], [prompt + cont])
    in_cont = [v for t, o, v in zip(lp.tokens, lp.text_offset, lp.token_logprobs) if o + len(t) > len(prompt)]
    assert len(in_cont) == len(part.token_logprobs) and sum(in_cont) == pytest.approx(part.total, abs=1e-3)
    assert len(lp.token_logprobs) - 1 == len(whole.token_logprobs)
    assert sum(lp.token_logprobs[1:]) == pytest.approx(whole.total, abs=1e-3)


@pytest.mark.slow
def test_bad_requests_are_rejected_with_4xx(url):
    with httpx.Client(base_url=url) as h:
        bad = h.post("/completions", json={"model": "tiny", "prompt": "x", "n": 0})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "n"  # OpenAI-style error body
        assert h.post("/completions", json={"model": "tiny", "prompt": "x", "echo": True, "max_tokens": 3}
                      ).status_code == 400  # echo without logprobs
        assert h.post("/chat/completions", json={"model": "tiny"}).status_code == 400


@pytest.mark.slow
def test_raftlab_serve_cli_end_to_end():
    """`raftlab serve tiny --port N` in its own process, used by the openai backend."""
    import subprocess
    import sys
    import time

    from raftlab.backends import get_backend
    from raftlab.backends.base import SamplingParams
    from raftlab.serve import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "raftlab.cli.main", "serve", "tiny", "--port", str(port),
                             "--name", "tiny-cli"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 240
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.time() < deadline, "raftlab serve did not come up"
            time.sleep(0.5)
        backend = get_backend(f"openai:tiny-cli@http://127.0.0.1:{port}/v1", api="completions")
        out = backend.generate(["Hello", "The answer is"], SamplingParams(n=2, temperature=0.7, max_new_tokens=4))
        assert [len(row) for row in out] == [2, 2]
        [s] = backend.score(["Hello"], [" world"])
        assert s.token_logprobs and all(lp < 0 for lp in s.token_logprobs)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
