"""openai backend: bounded concurrency and retries after timeouts, against a small loopback server."""

from __future__ import annotations

import threading
import time

import pytest

from raftlab.backends import get_backend
from raftlab.backends.base import SamplingParams


@pytest.fixture
def slow_server():
    """Async chat endpoint that sleeps ``delays.pop(0)`` seconds (default 0.4) and records concurrency."""
    import asyncio

    import uvicorn
    from fastapi import FastAPI

    from raftlab.backends.server import free_port

    state = {"delays": [], "calls": 0, "active": 0, "max_active": 0}
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(body: dict):
        state["calls"] += 1
        state["active"] += 1
        state["max_active"] = max(state["max_active"], state["active"])
        try:
            await asyncio.sleep(state["delays"].pop(0) if state["delays"] else 0.4)
        finally:
            state["active"] -= 1
        prompt = body["messages"][0]["content"]
        return {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": f"re: {prompt}"},
                             "finish_reason": "stop"}]}

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}/v1", state
    server.should_exit = True
    t.join(5)


@pytest.mark.slow
def test_requests_run_concurrently_but_bounded(slow_server):
    url, state = slow_server
    prompts = [f"q{i}" for i in range(9)]
    out = get_backend(f"openai:m@{url}", concurrency=3).generate(prompts, SamplingParams(max_new_tokens=4))
    assert [row[0].text for row in out] == [f"re: {p}" for p in prompts]  # results in prompt order
    assert state["max_active"] == 3


@pytest.mark.slow
def test_a_timed_out_request_is_retried(slow_server):
    url, state = slow_server
    state["delays"] = [3.0]  # the first request outlives the client timeout
    b = get_backend(f"openai:m@{url}", timeout=1.0, max_retries=2)
    out = b.generate(["hello"], SamplingParams(max_new_tokens=4))
    assert out[0][0].text == "re: hello" and state["calls"] == 2
