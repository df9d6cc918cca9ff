"""Third-party OpenAI-compatible servers as peers: a loopback fake that behaves like llama.cpp's llama-server
(a cap on n from its slots, no echo scoring) and one that silently returns fewer choices than asked."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from fastapi import FastAPI, Request  # module level: FastAPI resolves the endpoint's string annotations here
from fastapi.responses import JSONResponse

from raftlab.backends import get_backend
from raftlab.backends.base import SamplingParams
from raftlab.backends.openai_backend import BackendRequestError


def _fake_app(mode: str, log: list):
    app = FastAPI()

    @app.post("/v1/completions")
    @app.post("/v1/chat/completions")
    async def complete(request: Request):
        body = await request.json()
        n, seed = body.get("n", 1), body.get("seed")
        log.append({"n": n, "seed": seed, "echo": body.get("echo")})
        if body.get("model") == "broken":
            return JSONResponse(status_code=400, content={"error": {"code": 400, "type": "invalid_request_error",
                                                                    "message": "the prompt is too long for slot 0"}})
        if mode == "slots" and n > 2:  # llama.cpp: more samples than slots
            return JSONResponse(status_code=400, content={"error": {"code": 400, "type": "invalid_request_error",
                                                                    "message": "n must be <= 2 (server slots)"}})
        count = min(n, 2) if mode == "cap" else n
        if "messages" in body:
            choices = [{"index": i, "message": {"role": "assistant", "content": f"seed={seed} i={i}"},
                        "finish_reason": "stop"} for i in range(count)]
        else:  # echo and max_tokens=0 ignored: generated text only, chat-style logprobs
            choices = [{"index": i, "text": f"seed={seed} i={i}", "finish_reason": "stop",
                        "logprobs": {"content": [{"token": "x", "logprob": -0.1}]} if body.get("logprobs") else None}
                       for i in range(count)]
        return {"id": "x", "object": "text_completion", "created": 0, "model": body.get("model"), "choices": choices,
                "usage": {"prompt_tokens": 1, "completion_tokens": 3 * count, "total_tokens": 1 + 3 * count}}

    return app


@pytest.fixture
def fake_server(request):
    import uvicorn

    from raftlab.serve import free_port

    log: list = []
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(_fake_app(request.param, log), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the fake server did not start within 30 s"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}/v1", log
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.parametrize("fake_server", ["slots"], indirect=True)
@pytest.mark.parametrize("api", ["chat", "completions"])
def test_a_server_that_refuses_n_gets_one_request_per_sample_with_distinct_seeds(fake_server, api, caplog):
    url, log = fake_server
    backend = get_backend(f"openai:m@{url}", api=api)
    with caplog.at_level(logging.WARNING, logger="raftlab.backends.openai_backend"):
        [row] = backend.generate(["q"], SamplingParams(n=5, temperature=0.8, seed=10))
        [again] = backend.generate(["q"], SamplingParams(n=3, temperature=0.8, seed=10))
    assert [g.text for g in row] == [f"seed={10 + i} i=0" for i in range(5)]
    assert len(again) == 3
    assert log[0]["n"] == 5 and [e["n"] for e in log[1:]] == [1] * 8  # refused once, then one request per sample
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "refused n=5 (n must be <= 2 (server slots))" in warnings[0]


@pytest.mark.parametrize("fake_server", ["cap"], indirect=True)
def test_a_server_that_returns_fewer_choices_is_asked_for_the_rest(fake_server):
    url, log = fake_server
    [row] = get_backend(f"openai:m@{url}", api="completions").generate(["q"], SamplingParams(n=5, seed=0))
    assert len(row) == 5 and [e["seed"] for e in log] == [0, 2, 4] and [e["n"] for e in log] == [5, 2, 1]


@pytest.mark.parametrize("fake_server", ["slots"], indirect=True)
def test_errors_say_what_the_server_said_and_claim_no_retries(fake_server):
    url, log = fake_server
    with pytest.raises(BackendRequestError) as info:
        get_backend(f"openai:broken@{url}").generate(["q"], SamplingParams(n=1))
    message = str(info.value)
    assert "refused the request (HTTP 400, not retried): the prompt is too long for slot 0" in message
    assert "retries" not in message.replace("not retried", "") and len(log) == 1


@pytest.mark.parametrize("fake_server", ["slots"], indirect=True)
def test_scoring_refuses_clearly_when_the_server_does_not_echo(fake_server):
    url, _ = fake_server
    with pytest.raises(BackendRequestError, match="does not echo the prompt's log-probs.*llama-server ignores echo"):
        get_backend(f"openai:m@{url}").score(["The answer is"], [" B."])
