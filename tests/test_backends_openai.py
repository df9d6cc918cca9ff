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

    from raftlab.serve import free_port

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
        prompt = body["messages"][-1]["content"]
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


@pytest.fixture
def chat_server():
    """Loopback chat endpoint that records every request body and answers "The answer is 7."."""
    import uvicorn
    from fastapi import FastAPI

    from raftlab.serve import free_port

    bodies: list[dict] = []
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(body: dict):
        bodies.append(body)
        return {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "3 + 4 = 7. The answer is 7."},
                             "finish_reason": "stop"}]}

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}/v1", bodies
    server.should_exit = True
    t.join(5)


def test_teacher_requests_carry_the_papers_system_message(chat_server):
    from raftlab.backends.openai_backend import TEACHER_SYSTEM_PROMPT

    url, bodies = chat_server
    params = SamplingParams(max_new_tokens=4)
    plain = get_backend(f"openai:m@{url}")
    plain.generate(["q"], params)  # not a teacher, nothing set: no system message (eval prompts are plain)
    plain.as_teacher().generate(["q"], params)
    get_backend(f"openai:m@{url}", {"system_prompt": ""}).as_teacher().generate(["q"], params)  # "" sends none
    get_backend(f"openai:m@{url}", {"system_prompt": "Be brief."}).generate(["q"], params)
    assert [b["messages"] for b in bodies] == [
        [{"role": "user", "content": "q"}],
        [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "q"}],
        [{"role": "user", "content": "q"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "q"}],
    ]
    assert TEACHER_SYSTEM_PROMPT == "You are a helpful assistant."
    assert "system_prompt" not in plain.describe() and plain.system_prompt is None  # as_teacher copies
    with pytest.raises(ValueError, match="api='chat'"):
        get_backend(f"openai:m@{url}", {"system_prompt": "x", "api": "completions"})


def test_the_system_prompt_is_a_setting_of_the_rationale_run(chat_server, tmp_path):
    from raftlab.rationales import RationaleStore, SettingsMismatch, generate_rationales
    from raftlab.tasks import get_task

    url, bodies = chat_server
    task = get_task("synth_arith")
    examples = task.load("train", limit=2)
    store = tmp_path / "r.sqlite"
    generate_rationales(get_backend(f"openai:teacher@{url}"), task, examples, store, max_retries=1, progress=False)
    assert all(b["messages"][0] == {"role": "system", "content": "You are a helpful assistant."} for b in bodies)
    assert RationaleStore(store).settings()["teacher"]["system_prompt"] == "You are a helpful assistant."
    with pytest.raises(SettingsMismatch, match="teacher"):  # another system message is another run
        generate_rationales(get_backend(f"openai:teacher@{url}", {"system_prompt": ""}), task, examples, store,
                            max_retries=1, progress=False)
    generate_rationales(get_backend(f"openai:teacher@{url}", {"system_prompt": ""}), task, examples,
                        tmp_path / "none.sqlite", max_retries=1, progress=False)
    assert "system_prompt" not in RationaleStore(tmp_path / "none.sqlite").settings()["teacher"]
    assert sorted(b["messages"][0]["content"] for b in bodies[-2:]) == sorted(task.teacher_prompt(e) for e in examples)
    assert all(len(b["messages"]) == 1 for b in bodies[-2:])
