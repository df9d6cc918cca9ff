"""The openai backend retries 429/5xx and reports persistent failures."""

from __future__ import annotations

import threading

import pytest

from raftlab.backends import get_backend
from raftlab.backends.base import SamplingParams
from raftlab.backends.openai_backend import BackendRequestError


@pytest.fixture
def flaky_server():
    """Chat endpoint that fails the first ``fail`` requests with the given status codes."""
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    from raftlab.serve import free_port

    state = {"codes": [], "calls": 0}
    app = FastAPI()

    @app.post("/v1/chat/completions")
    def chat(body: dict):
        state["calls"] += 1
        if state["codes"]:
            return JSONResponse({"error": {"message": "busy"}}, status_code=state["codes"].pop(0))
        return {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": i, "message": {"role": "assistant", "content": f"ok {i}"},
                             "finish_reason": "stop"} for i in range(body.get("n", 1))]}

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    while not server.started:
        pass
    yield f"http://127.0.0.1:{port}/v1", state
    server.should_exit = True
    t.join(5)


@pytest.mark.slow
def test_retries_then_succeeds(flaky_server):
    url, state = flaky_server
    state["codes"] = [429, 500, 503]
    b = get_backend(f"openai:m@{url}", max_retries=5)
    out = b.generate(["q"], SamplingParams(n=2, max_new_tokens=4))
    assert [g.text for g in out[0]] == ["ok 0", "ok 1"]
    assert state["calls"] == 4


@pytest.mark.slow
def test_persistent_failure_raises_or_returns_error_generations(flaky_server):
    url, state = flaky_server
    state["codes"] = [500] * 10
    b = get_backend(f"openai:m@{url}", max_retries=1)
    with pytest.raises(BackendRequestError, match="after 1 retries"):
        b.generate(["q"], SamplingParams(n=1))
    state["codes"] = [500] * 10
    lenient = get_backend(f"openai:m@{url}", max_retries=1, on_error="empty")
    out = lenient.generate(["q"], SamplingParams(n=2))
    assert [g.finish_reason for g in out[0]] == ["error", "error"]
