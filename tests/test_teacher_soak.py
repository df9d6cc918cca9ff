"""Fault-injection soak test of rationale generation against a loopback OpenAI-compatible fake teacher.

The fake teacher answers deterministically: whether an attempt is correct depends only on the question and the
attempt's seed. Its transport misbehaves on a fixed cycle: 429s, 500s, timeouts, dropped connections and garbage
bodies. In one phase it also dies and comes back mid-run, and in another the client is killed with SIGKILL.
Whatever happens, every example must end kept, failed by the gold filter, or pending (then a rerun resumes it).
The attempts must be exactly those of a fault-free run (same attempt numbers, no duplicates, nothing lost), and
so must the kept set.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from raftlab.serve import free_port
from raftlab.rationales import generate_rationales
from raftlab.tasks import get_task

TASK = get_task("synth_arith")
N = 300
MAX_RETRIES = 3
FAULT_CYCLE = ("ok", "429", "ok", "500", "ok", "drop", "ok", "garbage", "ok", "ok", "429", "ok",
               "ok", "500", "ok", "timeout", "ok", "drop", "ok", "garbage", "ok", "ok", "ok", "ok")
CLIENT_TIMEOUT = 1.0  # generous, so that a loaded machine does not add timeouts of its own


def first_correct_attempt(question: str) -> int:
    """1..4: the attempt from which the fake teacher answers this question correctly (4 = never, within 3)."""
    return int(hashlib.sha256(question.encode()).hexdigest(), 16) % 4 + 1


class FakeTeacher:
    """A chat-completions server whose answers are deterministic and whose transport fails on a cycle."""

    def __init__(self, labels: dict[str, str], faults: bool) -> None:
        self.labels, self.faults_on = labels, faults
        self.lock = threading.Lock()
        self.requests = self.faults = self.answers = 0
        self.port = free_port()
        self.server: ThreadingHTTPServer | None = None

    def decide(self) -> str:
        with self.lock:
            kind = FAULT_CYCLE[self.requests % len(FAULT_CYCLE)] if self.faults_on else "ok"
            self.requests += 1
            if kind == "ok":
                self.answers += 1
            else:
                self.faults += 1
            return kind

    def answer(self, body: dict) -> str:
        prompt = body["messages"][-1]["content"]
        if "Give your analysis first" in prompt:  # asked as the study's judge (raftlab.rationales.judge)
            return "The steps lead to the answer. Helpful"
        question = max((q for q in self.labels if q in prompt), key=len)
        attempt = body["seed"] % 1000
        if attempt >= first_correct_attempt(question):
            return f"First step. Second step. The answer is {self.labels[question]}."
        return "A wrong path. The answer is 1000001."

    def start(self) -> None:
        teacher = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                kind = teacher.decide()
                if kind == "drop":
                    self.close_connection = True
                    return  # no response at all
                if kind == "timeout":
                    time.sleep(CLIENT_TIMEOUT * 1.5)
                if kind in ("429", "500"):
                    payload, status = {"error": {"message": f"injected {kind}"}}, int(kind)
                elif kind == "garbage":
                    payload, status = None, 200
                else:
                    payload, status = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                                       "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                           "role": "assistant", "content": teacher.answer(body)}}],
                                       "usage": {"prompt_tokens": 1, "completion_tokens": 5, "total_tokens": 6}}, 200
                data = b"{not json" if payload is None else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout)

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def spec(self) -> str:
        return f"openai:teacher@http://127.0.0.1:{self.port}/v1"


@pytest.fixture(scope="module")
def examples():
    return TASK.load("train", limit=N, seed=0)


def _backend(teacher: FakeTeacher):
    from raftlab.backends import get_backend

    # no client-side retries: every failed HTTP request is one request error of the generator
    return get_backend(teacher.spec, max_retries=0, timeout=CLIENT_TIMEOUT, concurrency=8)


def _run(teacher: FakeTeacher, examples, store: Path) -> dict:
    return generate_rationales(_backend(teacher), TASK, examples, store, max_retries=MAX_RETRIES, concurrency=8,
                               request_retries=2, retry_backoff=0.01, progress=False)


def _until_done(teacher: FakeTeacher, examples, store: Path, runs: int = 8) -> list[dict]:
    out = []
    for _ in range(runs):
        out.append(_run(teacher, examples, store))
        if out[-1]["pending"] == 0:
            return out
    raise AssertionError(f"still pending after {runs} runs: {out[-1]}")


def _state(store: Path) -> dict:
    db = sqlite3.connect(store)
    attempts: dict[str, list[tuple[int, int]]] = {}
    for ex_id, attempt, correct in db.execute("SELECT example_id, attempt, correct FROM attempts "
                                              "ORDER BY example_id, attempt"):
        attempts.setdefault(ex_id, []).append((attempt, correct))
    return {"attempts": attempts, "kept": {r[0] for r in db.execute("SELECT example_id FROM rationales")},
            "failed": dict(db.execute("SELECT example_id, attempts FROM failures")),
            "request_errors": db.execute("SELECT COUNT(*) FROM request_errors").fetchone()[0]}


@pytest.fixture(scope="module")
def reference(examples, tmp_path_factory):
    """The fault-free run: what every faulty run must end up with."""
    teacher = FakeTeacher({e.question: e.label for e in examples}, faults=False)
    teacher.start()
    store = tmp_path_factory.mktemp("ref") / "r.sqlite"
    try:
        stats = _run(teacher, examples, store)
    finally:
        teacher.stop()
    assert stats["pending"] == 0 and stats["kept"] + stats["failed"] == N
    state = _state(store)
    errors = sqlite3.connect(store).execute("SELECT error FROM request_errors").fetchall()
    assert state["request_errors"] == 0 and teacher.faults == 0, errors
    for e in examples:  # attempts are exactly the deterministic schedule
        k = min(first_correct_attempt(e.question), MAX_RETRIES)
        assert [a for a, _ in state["attempts"][e.id]] == list(range(1, k + 1))
    return state


def _same_outcome(state: dict, reference: dict) -> None:
    assert state["kept"] == reference["kept"]
    assert state["failed"] == reference["failed"]
    assert state["attempts"] == reference["attempts"]  # same attempt numbers and verdicts: none lost, none twice
    assert len(state["kept"]) + len(state["failed"]) == N


@pytest.mark.slow
def test_faults_are_request_errors_with_exact_counts(examples, reference, tmp_path):
    """429/500/timeouts/drops/garbage: never an attempt, each one counted, outcome identical to the fault-free run."""
    teacher = FakeTeacher({e.question: e.label for e in examples}, faults=True)
    teacher.start()
    try:
        runs = _until_done(teacher, examples, tmp_path / "r.sqlite")
    finally:
        teacher.stop()
    state = _state(tmp_path / "r.sqlite")
    _same_outcome(state, reference)
    assert teacher.faults > 100
    assert state["request_errors"] == teacher.faults  # every injected fault recorded once, and nothing else
    assert sum(len(a) for a in state["attempts"].values()) == teacher.answers  # every answer is one attempt
    assert sum(r["request_errors_this_run"] for r in runs) == teacher.faults


@pytest.mark.slow
def test_teacher_dies_mid_run_examples_stay_pending_and_a_rerun_resumes(examples, reference, tmp_path):
    teacher = FakeTeacher({e.question: e.label for e in examples}, faults=True)
    teacher.start()
    store = tmp_path / "r.sqlite"

    def outage() -> None:  # the teacher dies after ~150 requests and comes back a second later
        deadline = time.monotonic() + 120
        while teacher.requests < 150 and time.monotonic() < deadline:
            time.sleep(0.01)
        teacher.stop()
        time.sleep(1.0)
        teacher.start()

    killer = threading.Thread(target=outage, daemon=True)
    killer.start()
    try:
        first = _run(teacher, examples, store)
        killer.join(10)
        assert first["pending"] > 0  # examples whose requests kept failing while it was down
        assert first["kept"] + first["failed"] + first["pending"] <= N
        mid = _state(store)
        assert not (set(mid["failed"]) & set(mid["kept"]))
        runs = _until_done(teacher, examples, store)
    finally:
        teacher.stop()
    assert runs[-1]["pending"] == 0
    _same_outcome(_state(store), reference)


SCRIPT = """
import sys
sys.path.insert(0, {root!r})
from raftlab.backends import get_backend
from raftlab.rationales import generate_rationales
from raftlab.tasks import get_task
task = get_task("synth_arith")
examples = task.load("train", limit={n}, seed=0)
backend = get_backend({spec!r}, max_retries=0, timeout={timeout}, concurrency=8)
generate_rationales(backend, task, examples, {store!r}, max_retries={max_retries}, concurrency=8,
                    request_retries=2, retry_backoff=0.01, progress=False)
"""


@pytest.mark.slow
def test_sigkill_mid_run_loses_and_duplicates_nothing(examples, reference, tmp_path):
    teacher = FakeTeacher({e.question: e.label for e in examples}, faults=True)
    teacher.start()
    store = tmp_path / "r.sqlite"
    root = str(Path(__file__).resolve().parents[1])
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(root=root, n=N, spec=teacher.spec, timeout=CLIENT_TIMEOUT, store=str(store),
                                    max_retries=MAX_RETRIES))
    try:
        proc = subprocess.Popen([sys.executable, str(script)], cwd=root, env={**os.environ, "PYTHONPATH": root})
        deadline = time.time() + 120
        done = 0
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
            if store.exists():
                try:
                    done = sqlite3.connect(store, timeout=1).execute("SELECT COUNT(*) FROM attempts").fetchone()[0]
                except sqlite3.OperationalError:
                    continue
                if done >= 150:
                    break
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        partial = _state(store)
        assert 150 <= sum(len(a) for a in partial["attempts"].values()) < sum(len(a) for a in
                                                                              reference["attempts"].values())
        runs = _until_done(teacher, examples, store)
    finally:
        teacher.stop()
    assert runs[-1]["pending"] == 0
    _same_outcome(_state(store), reference)
