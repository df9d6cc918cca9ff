"""`raftlab serve` concurrency: waiting requests are batched, a full queue answers 503, a disconnected client's
request is cancelled, the tokenizer is used from one thread. A fake backend held at a gate orders the threads
(events, each wait with a deadline); the hf tests check the real sampler."""

from __future__ import annotations

import concurrent.futures
import socket
import threading
import time

import httpx
import pytest

from raftlab.backends.base import Generation, SamplingParams
from raftlab.serve.scheduler import BatchScheduler, Cancelled, ServerBusy
from raftlab.serve import serve_in_thread
from tests._backend_helpers import TokenizingBackend

#: Deadline (s) of every wait below: far beyond what any step takes, so reaching it means a hang.
WAIT_S = 30


class SlowBackend:
    """Writes one 'x' per step (``step_s`` each), checking ``should_stop`` every step like the hf backend.
    ``entered`` is set once a generate call has begun (it then waits for ``gate``); ``stopped`` once a sequence was
    stopped by ``should_stop``."""

    name, model_name, thread_safe, cancellable = "slow", "slow", False, True

    def __init__(self, step_s: float = 0.005) -> None:
        self.step_s, self.calls, self.aborted = step_s, [], 0
        self.gate, self.entered, self.stopped = threading.Event(), threading.Event(), threading.Event()
        self.gate.set()

    def generate(self, prompts, params, should_stop=None):
        self.entered.set()
        if not self.gate.wait(WAIT_S):
            raise TimeoutError("the test never opened the gate")
        self.calls.append(list(prompts))
        done = [0] * len(prompts)
        live = set(range(len(prompts)))
        for _ in range(params.max_new_tokens):
            for i in list(live):
                if should_stop is not None and should_stop(i):
                    live.discard(i)
                    self.aborted += 1
                    self.stopped.set()
                else:
                    done[i] += 1
            if not live:
                break
            time.sleep(self.step_s)
        return [[Generation(text=f"{p}:" + "x" * done[i], num_tokens=done[i], finish_reason="length")
                 for _ in range(params.n)] for i, p in enumerate(prompts)]


PARAMS = SamplingParams(n=2, temperature=0.8, max_new_tokens=5, seed=1)


def test_waiting_jobs_with_the_same_params_run_as_one_batch():
    backend = SlowBackend()
    backend.gate.clear()  # hold the worker so that everything below waits together
    sched = BatchScheduler(backend)
    first = sched.generate(["a"], PARAMS)
    assert backend.entered.wait(WAIT_S)  # the worker has taken `first` and waits at the gate
    same = [sched.generate([f"q{i}"], PARAMS) for i in range(4)]
    other = sched.generate(["z"], SamplingParams(n=1, max_new_tokens=3))
    backend.gate.set()
    assert [j.wait(WAIT_S)[0][0].text for j in same] == [f"q{i}:xxxxx" for i in range(4)]
    assert other.wait(WAIT_S)[0][0].text == "z:xxx" and first.wait(WAIT_S)[0][0].text == "a:xxxxx"
    assert backend.calls == [["a"], ["q0", "q1", "q2", "q3"], ["z"]]
    assert sched.stats.largest_batch == 4
    sched.close()


def test_prepare_runs_in_the_worker_and_its_error_fails_its_own_job_alone():
    backend = SlowBackend()
    backend.gate.clear()
    sched = BatchScheduler(backend)
    first = sched.generate(["a"], PARAMS)
    assert backend.entered.wait(WAIT_S)

    def refuse(_backend):
        raise ValueError("prompt too long")

    bad = sched.generate(["b"], PARAMS, prepare=refuse)
    good = sched.generate(["unrendered"], PARAMS, prepare=lambda _backend: ["c"])
    backend.gate.set()
    with pytest.raises(ValueError, match="too long"):
        bad.wait(WAIT_S)
    assert good.wait(WAIT_S)[0][0].text == "c:xxxxx" and first.wait(WAIT_S)
    assert backend.calls == [["a"], ["c"]]
    sched.close()


def test_without_combining_requests_run_one_at_a_time():
    backend = SlowBackend()
    backend.gate.clear()
    sched = BatchScheduler(backend, combine=False)
    jobs = [sched.generate([f"q{i}"], PARAMS) for i in range(3)]
    backend.gate.set()
    [j.wait(WAIT_S) for j in jobs]
    assert backend.calls == [["q0"], ["q1"], ["q2"]]
    sched.close()


def test_a_full_queue_refuses_and_a_cancelled_waiting_job_is_dropped():
    backend = SlowBackend()
    backend.gate.clear()
    sched = BatchScheduler(backend, max_queue=2)
    running = sched.generate(["r"], PARAMS)
    assert backend.entered.wait(WAIT_S)
    waiting = [sched.generate(["w1"], SamplingParams(max_new_tokens=1)), sched.generate(["w2"], PARAMS)]
    with pytest.raises(ServerBusy, match="limit 2"):
        sched.generate(["w3"], PARAMS)
    waiting[0].cancel()
    backend.gate.set()
    with pytest.raises(Cancelled):
        waiting[0].wait(WAIT_S)
    assert running.wait(WAIT_S) and waiting[1].wait(WAIT_S)
    assert ["w1"] not in backend.calls and sched.stats.refused == 1 and sched.stats.cancelled == 1
    sched.close()


def test_a_running_job_stops_when_cancelled():
    backend = SlowBackend(step_s=0.01)
    sched = BatchScheduler(backend)
    job = sched.generate(["long"], SamplingParams(max_new_tokens=10_000))  # 100 s unless stopped
    assert backend.entered.wait(WAIT_S)
    job.cancel()
    with pytest.raises(Cancelled):
        job.wait(WAIT_S)
    assert backend.aborted == 1
    sched.close()


@pytest.fixture
def slow_server():
    backend = SlowBackend(step_s=0.01)
    url, stop = serve_in_thread(backend, model_name="slow", max_queue=3)
    yield backend, url
    stop()


def _post(url, prompt, max_tokens=20):
    return httpx.post(f"{url}/completions", json={"model": "slow", "prompt": prompt, "max_tokens": max_tokens,
                                                   "temperature": 0.8, "seed": 0}, timeout=WAIT_S)


def _first_done(futures, k):
    """The first ``k`` of ``futures`` to finish (within the deadline)."""
    done = concurrent.futures.as_completed(futures, timeout=WAIT_S)
    return [next(done) for _ in range(k)]


def test_concurrent_clients_are_batched_and_a_full_queue_answers_503(slow_server):
    backend, url = slow_server
    backend.gate.clear()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(_post, url, "p0")]
        assert backend.entered.wait(WAIT_S)  # the worker holds p0 at the gate
        futures += [pool.submit(_post, url, f"p{i}") for i in range(1, 6)]
        # with the gate shut only refusals can finish: two, once three requests wait in the queue
        assert [f.result().status_code for f in _first_done(futures, 2)] == [503, 503]
        backend.gate.set()
        responses = [f.result(timeout=WAIT_S) for f in futures]
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 4 + [503] * 2, codes
    busy = next(r for r in responses if r.status_code == 503).json()["error"]
    assert busy["type"] == "server_busy" and "limit 3" in busy["message"]
    ok = [r.json()["choices"][0]["text"] for r in responses if r.status_code == 200]
    assert all(t.endswith("x" * 20) for t in ok)
    assert max(len(c) for c in backend.calls) == 3  # the three waiting requests ran as one batch


def test_a_client_that_disconnects_stops_its_generation(slow_server):
    backend, url = slow_server
    host, port = url.split("//")[1].split("/")[0].split(":")
    body = b'{"model": "slow", "prompt": "forever", "max_tokens": 100000}'
    with socket.create_connection((host, int(port)), timeout=WAIT_S) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        assert backend.entered.wait(WAIT_S)  # generating; now the client goes away
    assert backend.stopped.wait(WAIT_S) and backend.aborted == 1  # long before 100000 steps of 10 ms
    r = _post(url, "after", max_tokens=3)  # and the worker is free again
    assert r.status_code == 200 and r.json()["choices"][0]["text"] == "after:xxx"


@pytest.mark.slow
def test_hf_generation_stops_when_asked_and_batching_does_not_change_samples(hf):
    params = SamplingParams(n=3, temperature=1.0, max_new_tokens=12, seed=5)
    alone = [hf.generate([p], params)[0] for p in ("The cat", "A dog")]
    together = hf.generate(["The cat", "A dog"], params)
    assert [[g.text for g in row] for row in together] == [[g.text for g in row] for row in alone]
    calls = {"n": 0}

    def stop_first_after_three_steps(i: int) -> bool:
        calls["n"] += 1
        return i == 0 and calls["n"] > 6  # two prompts checked per step: prompt 0 stops at step 4

    rows = hf.generate(["The cat", "A dog"], SamplingParams(n=2, temperature=0.0, max_new_tokens=12, seed=0),
                       should_stop=stop_first_after_three_steps)
    assert all(g.finish_reason == "abort" and g.num_tokens <= 3 for g in rows[0])
    assert all(g.finish_reason != "abort" for g in rows[1])


@pytest.mark.slow
def test_hf_stops_when_the_stop_regex_matches(hf):
    free = hf.generate(["The cat"], SamplingParams(n=2, temperature=1.0, max_new_tokens=30, seed=3))[0]
    cut = hf.generate(["The cat"], SamplingParams(n=2, temperature=1.0, max_new_tokens=30, seed=3,
                                                  stop_regex=r"\S\s\S"))[0]
    import re

    matched = 0
    for a, b in zip(free, cut):
        m = re.search(r"\S\s\S", a.text)
        if m and m.end() < len(a.text):  # the same sample, stopped at the first match and cut at its end
            assert b.text == a.text[: m.end()] and b.num_tokens < a.num_tokens and b.finish_reason == "stop"
            matched += 1
    assert matched >= 1, [a.text for a in free]


def test_the_openai_client_sees_503_from_a_full_queue(slow_server):
    import openai

    backend, url = slow_server
    backend.gate.clear()
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=WAIT_S)

    def create(prompt):
        try:
            return client.completions.create(model="slow", prompt=prompt, max_tokens=2)
        except openai.APIStatusError as exc:
            return exc

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        held = pool.submit(_post, url, "held")
        assert backend.entered.wait(WAIT_S)
        futures = [pool.submit(create, f"w{i}") for i in range(4)]  # one more than the queue of 3 holds
        [refused] = _first_done(futures, 1)  # with the gate shut only the refusal can finish
        backend.gate.set()
        results = [f.result(timeout=WAIT_S) for f in futures]
        assert held.result(timeout=WAIT_S).status_code == 200
    error = refused.result()
    assert isinstance(error, openai.APIStatusError), error
    assert error.status_code == 503 and "server busy" in str(error)
    assert sum(isinstance(r, openai.APIStatusError) for r in results) == 1


def test_the_tokenizer_is_used_from_the_worker_thread_alone():
    """Fast tokenizers are not thread-safe: counting, chat rendering, scoring and the tokenizer endpoints all run on
    the one worker thread that generates, never on the event loop or the endpoint thread pool."""
    backend = TokenizingBackend()
    url, stop = serve_in_thread(backend, model_name="tok")
    root = url.removesuffix("/v1")
    calls = [("/v1/completions", {"prompt": "Hello", "max_tokens": 2}),
             ("/v1/completions", {"prompt": ["ab", "cd"], "max_tokens": 2, "logprobs": 0, "echo": True}),
             ("/v1/completions", {"prompt": "score me", "max_tokens": 0, "logprobs": 0, "echo": True}),
             ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2,
                                       "logprobs": True}),
             ("/tokenize", {"prompt": "Hello"}), ("/detokenize", {"tokens": [72, 105]})]
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(httpx.post, root + path, json=body, timeout=WAIT_S)
                       for _ in range(4) for path, body in calls]
            futures.append(pool.submit(httpx.get, root + "/tokenizer_info", timeout=WAIT_S))
            responses = [f.result(timeout=WAIT_S) for f in futures]
    finally:
        stop()
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    assert responses[4].json()["tokens"] == [72, 101, 108, 108, 111] and responses[5].json()["prompt"] == "Hi"
    assert backend.tokenizer.threads == {"raftlab-serve-worker"} and not backend.tokenizer.overlapped
