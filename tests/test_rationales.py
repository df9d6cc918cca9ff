"""Rationale pipeline: gold filter, retries, passes, store consistency, kill -9 resume, faults, judge, blank."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raftlab.rationales import (
    RationaleStore, SettingsMismatch, add_think_tokens, export_jsonl, generate_rationales, make_blank_rationales,
    parse_verdict, strip_answer_sentence, think_tokens,
)
from raftlab.rationales.generate import LOCAL_CALL_BATCHES
from raftlab.tasks import get_task, load_jsonl
from tests._rationale_helpers import AttemptTeacher, success_schedule

TASK = get_task("synth_arith")


def _check_store(path, examples, schedule, max_retries, n=None):
    """Attempts 1..k without gaps or duplicates per example; kept/failures consistent with the schedule."""
    db = sqlite3.connect(path)
    rows = db.execute("SELECT example_id, attempt, correct FROM attempts ORDER BY example_id, attempt").fetchall()
    by_ex = {}
    for ex_id, attempt, correct in rows:
        by_ex.setdefault(ex_id, []).append((attempt, correct))
    kept = {r[0] for r in db.execute("SELECT example_id FROM rationales")}
    failed = dict(db.execute("SELECT example_id, attempts FROM failures"))
    for ex_id, atts in by_ex.items():
        assert [a for a, _ in atts] == list(range(1, len(atts) + 1)), ex_id
        s = schedule[ex_id]
        assert all(c == (a >= s) for a, c in atts)
        if s <= max_retries and len(atts) == s:
            assert ex_id in kept and ex_id not in failed
        elif len(atts) == max_retries and s > max_retries:
            assert failed[ex_id] == max_retries and ex_id not in kept
        else:
            assert ex_id not in kept and ex_id not in failed  # still in progress (stopped at n)
    if n is None:
        assert len(by_ex) == len(examples)
    return by_ex, kept, failed


@pytest.mark.slow
@pytest.mark.parametrize("threaded", [False, True], ids=["batched", "thread-pool"])
def test_gold_filter_and_retry_counts(tmp_path, threaded):
    examples = TASK.load("train", limit=12)
    schedule = success_schedule(examples, 3)
    teacher = AttemptTeacher(examples, schedule, delay=0.01 if threaded else 0.0, thread_safe=threaded)
    stats = generate_rationales(teacher, TASK, examples, tmp_path / "r.sqlite", max_retries=3, concurrency=2,
                                progress=False)
    # concurrency bounds the work in flight: 2 one-prompt requests at a time, or calls of LOCAL_CALL_BATCHES x 2
    # prompts to a local backend (which decodes 2 at a time and refills)
    calls = min(12, 2 * LOCAL_CALL_BATCHES)
    assert (teacher.max_prompts, teacher.max_in_flight) == ((1, 2) if threaded else (calls, 1))
    by_ex, kept, failed = _check_store(tmp_path / "r.sqlite", examples, schedule, 3)
    assert len(kept) == sum(s <= 3 for s in schedule.values()) == stats["kept"]
    assert len(failed) == sum(s > 3 for s in schedule.values()) == stats["failed"]
    assert stats["attempts"] == sum(min(s, 3) for s in schedule.values())
    assert stats["kept_ratio"] == pytest.approx(len(kept) / 12)
    assert stats["kept_at_attempt"] == {str(a): sum(s == a for s in schedule.values()) for a in (1, 2, 3)}
    assert stats["examples_in_progress"] == 0
    out = tmp_path / "rationales.jsonl"
    assert export_jsonl(tmp_path / "r.sqlite", out) == len(kept)
    exported = load_jsonl(out)
    assert all(e.rationale == "First I think. Then I compute." for e in exported)
    assert json.loads((tmp_path / "stats.json").read_text())["kept"] == len(kept)


@pytest.mark.parametrize("threaded", [False, True], ids=["batched", "thread-pool"])
def test_passes_stop_once_n_are_kept(tmp_path, threaded):
    examples = TASK.load("train", limit=12)
    schedule = success_schedule(examples, 3)
    generate_rationales(AttemptTeacher(examples, schedule, thread_safe=threaded), TASK, examples,
                        tmp_path / "r.sqlite", n=5, max_retries=3, concurrency=2, progress=False)
    _, kept, _ = _check_store(tmp_path / "r.sqlite", examples, schedule, 3, n=5)
    # an API teacher (threads) never overshoots; a local one's last call may keep up to concurrency - 1 more
    assert len(kept) == 5 if threaded else 5 <= len(kept) <= 6
    # pass 1 tries every example once before any retry: the five kept come from first-attempt successes first
    first_try = [e.id for e in examples if schedule[e.id] == 1]
    assert set(first_try) <= kept or len(first_try) >= 5
    out = tmp_path / "rationales.jsonl"
    assert export_jsonl(tmp_path / "r.sqlite", out, limit=5) == 5
    order = [e.id for e in examples if e.id in kept]
    assert [e.id for e in load_jsonl(out)] == order[:5]  # the first n in the examples' order


class _CallSizes(AttemptTeacher):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sizes = []

    def generate(self, prompts, params):
        self.sizes.append(len(prompts))
        return super().generate(prompts, params)


def test_a_local_teachers_last_calls_carry_a_whole_decoding_batch(tmp_path):
    """Near the n-th kept rationale a local teacher still gets ``concurrency`` prompts per call, not the shortfall
    (a call of one prompt would cost a whole generation for one attempt); the export holds exactly n."""
    examples = TASK.load("train", limit=60)
    schedule = {e.id: 1 if i % 3 == 0 else 9 for i, e in enumerate(examples)}  # a third kept, at attempt 1
    teacher = _CallSizes(examples, schedule)
    generate_rationales(teacher, TASK, examples, tmp_path / "r.sqlite", n=12, max_retries=1, concurrency=4,
                        progress=False)
    assert teacher.sizes[0] == 12 and all(size >= 4 for size in teacher.sizes)
    # 12 prompts keep 4, 8 keep 3 (shortfall 5), 5 keep 2 (shortfall 3: still 4 prompts, never 3, 2 or 1)
    assert teacher.sizes[:3] == [12, 8, 5]
    kept = RationaleStore(tmp_path / "r.sqlite").kept_ids()
    assert 12 <= len(kept) < 12 + 4
    assert export_jsonl(tmp_path / "r.sqlite", tmp_path / "out.jsonl", limit=12) == 12


def test_raising_max_retries_retries_gold_filter_failures_lowering_and_other_settings_are_refused(tmp_path):
    examples = TASK.load("train", limit=6)
    schedule = {e.id: 1 if i < 3 else 4 for i, e in enumerate(examples)}  # three need a 4th attempt
    store = tmp_path / "r.sqlite"
    first = generate_rationales(AttemptTeacher(examples, schedule), TASK, examples, store, max_retries=2,
                                progress=False)
    assert (first["kept"], first["failed"], first["attempts"]) == (3, 3, 3 + 3 * 2)
    with pytest.raises(SettingsMismatch, match="lowering it to 1 is refused"):
        generate_rationales(AttemptTeacher(examples, schedule), TASK, examples, store, max_retries=1, progress=False)
    second = generate_rationales(AttemptTeacher(examples, schedule), TASK, examples, store, max_retries=5,
                                 progress=False)  # the failures get the larger budget, nothing is redone
    assert (second["kept"], second["failed"], second["attempts"]) == (6, 0, 3 + 3 * 4)
    assert RationaleStore(store).settings()["max_retries"] == 5
    with pytest.raises(SettingsMismatch, match="style"):
        generate_rationales(AttemptTeacher(examples, schedule), TASK, examples, store, max_retries=5, style="B",
                            progress=False)
    generate_rationales(AttemptTeacher(examples, schedule), TASK, examples, store, max_retries=5, style="B",
                        force_new_run=True, progress=False)
    assert RationaleStore(store).settings()["style"] == "B"


@pytest.mark.slow
def test_teacher_served_elsewhere_resumes_but_another_model_is_refused(tmp_path):
    examples = TASK.load("train", limit=3)

    def teacher(model, url):
        t = AttemptTeacher(examples, {e.id: 2 for e in examples})
        t.describe = lambda: {"backend": "openai", "model": model, "base_url": url, "api": "chat"}
        return t

    store = tmp_path / "r.sqlite"
    generate_rationales(teacher("m", "http://127.0.0.1:1/v1"), TASK, examples, store, n=1, max_retries=2,
                        concurrency=1, progress=False)
    generate_rationales(teacher("m", "http://127.0.0.1:2/v1"), TASK, examples, store, max_retries=2,
                        progress=False)  # same model on another port: resumes
    with pytest.raises(SettingsMismatch, match="teacher"):
        generate_rationales(teacher("other", "http://127.0.0.1:2/v1"), TASK, examples, store, max_retries=2,
                            progress=False)
    db = RationaleStore(store)
    assert db.count("rationales") == 3 and db.count("attempts") == 6
    assert [r["settings"]["teacher"]["base_url"] for r in db.runs()] == ["http://127.0.0.1:1/v1",
                                                                       "http://127.0.0.1:2/v1"]


KILL_SCRIPT = """
import sys
sys.path.insert(0, {root!r})
from raftlab.rationales import generate_rationales
from raftlab.tasks import get_task
from tests._rationale_helpers import AttemptTeacher, success_schedule
task = get_task("synth_arith")
examples = task.load("train", limit=40)
teacher = AttemptTeacher(examples, success_schedule(examples, 3), delay=0.03, thread_safe={threaded},
                         started_file={started!r})
generate_rationales(teacher, task, examples, {store!r}, max_retries=3, concurrency=2, progress=False)
"""


@pytest.mark.slow
@pytest.mark.parametrize("threaded", [False, True], ids=["batched", "thread-pool"])
def test_kill_9_and_resume_loses_nothing(tmp_path, threaded):
    root = str(Path(__file__).resolve().parents[1])
    store = str(tmp_path / "r.sqlite")
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT.format(root=root, store=store, threaded=threaded, started=None))
    proc = subprocess.Popen([sys.executable, str(script)], cwd=root)
    deadline = time.time() + 60
    while time.time() < deadline:  # kill once some but not all attempts are in
        time.sleep(0.1)
        if os.path.exists(store):
            try:
                n = sqlite3.connect(store, timeout=1).execute("SELECT COUNT(*) FROM attempts").fetchone()[0]
            except sqlite3.OperationalError:
                continue
            if n >= 10:
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    partial = sqlite3.connect(store).execute("SELECT COUNT(*) FROM attempts").fetchone()[0]
    examples = TASK.load("train", limit=40)
    schedule = success_schedule(examples, 3)
    assert 10 <= partial < sum(min(s, 3) for s in schedule.values())
    generate_rationales(AttemptTeacher(examples, schedule, thread_safe=threaded), TASK, examples, store,
                        max_retries=3, concurrency=2, progress=False)
    by_ex, kept, failed = _check_store(store, examples, schedule, 3)
    assert sum(len(a) for a in by_ex.values()) == sum(min(s, 3) for s in schedule.values())
    assert len(kept) + len(failed) == 40
    runs = RationaleStore(store).runs()
    assert [r["status"] for r in runs] == ["running", "finished"]  # the killed invocation never closed its row
    assert runs[1]["attempts"] == sum(min(s, 3) for s in schedule.values())


@pytest.mark.slow
def test_ctrl_c_stops_a_threaded_run_at_once(tmp_path):
    _ctrl_c_scenario(tmp_path / "a")


def _ctrl_c_scenario(tmp_path):
    tmp_path.mkdir()
    root = str(Path(__file__).resolve().parents[1])
    store = str(tmp_path / "r.sqlite")
    script = tmp_path / "run.py"
    started = tmp_path / "requests-in-flight"
    script.write_text(KILL_SCRIPT.format(root=root, store=store, threaded=True, started=str(started))
                      .replace("delay=0.03", "delay=60"))
    # SIGINT as in a terminal: the child starts with the default disposition, whatever this process inherited
    # (an ignored SIGINT is inherited by children, and Python then never raises KeyboardInterrupt)
    proc = subprocess.Popen([sys.executable, str(script)], cwd=root, stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while not started.exists():  # until the teacher holds requests in flight (each takes 60 s)
        assert time.time() < deadline and proc.poll() is None, "the run never sent a request"
        time.sleep(0.05)
    t0 = time.time()
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=60)
        raise
    assert code != 0
    assert time.time() - t0 < 20  # did not wait for the 60 s requests in flight
    assert [r["status"] for r in RationaleStore(store).runs()] == ["interrupted"]


@pytest.fixture
def faulty_server():
    """OpenAI-style chat server whose answer for each question follows a per-question schedule."""
    import asyncio
    import threading

    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    from raftlab.serve import free_port

    state = {"plans": {}, "requests": {}}
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(body: dict):
        prompt = body["messages"][-1]["content"]
        q = max((q for q in state["plans"] if q in prompt), key=len)
        i = state["requests"].get(q, 0)
        state["requests"][q] = i + 1
        plan = state["plans"][q]
        action = plan[min(i, len(plan) - 1)]
        if isinstance(action, int):
            return JSONResponse({"error": {"message": "fault"}}, status_code=action)
        if action == "timeout":
            await asyncio.sleep(2.0)
            action = "garbage"
        text = {"empty": "", "garbage": "#$%^ qwerty"}.get(action, action)
        return {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    while not server.started:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}/v1", state
    server.should_exit = True
    t.join(5)


@pytest.mark.slow
def test_faults_429_500_timeouts_empty_garbage(faulty_server, tmp_path, monkeypatch):
    from raftlab.backends import get_backend

    monkeypatch.setenv("OPENAI_API_KEY", "sk-do-not-store-me")
    url, state = faulty_server
    ex = TASK.load("train", limit=5)
    ok = [f"Reasoning here. The answer is {e.label}." for e in ex]
    plans = [
        [429, ok[0]],                          # SDK retry absorbs the 429: kept on attempt 1
        ["empty", "garbage", ok[1]],           # two bad attempts, kept on attempt 3
        [500, 500, ok[2]],                     # the request fails after its SDK retry and is re-sent: attempt 1
        ["timeout", "timeout", ok[3]],         # times out twice, re-sent: kept on attempt 1
        ["garbage"],                           # never parseable: a failure after 3 attempts
    ]
    state["plans"] = {e.question: p for e, p in zip(ex, plans)}
    teacher = get_backend(f"openai:teacher@{url}", max_retries=1, timeout=0.5, on_error="empty", concurrency=3)
    stats = generate_rationales(teacher, TASK, ex, tmp_path / "r.sqlite", max_retries=3, concurrency=3,
                                progress=False, retry_backoff=0.01)
    db = sqlite3.connect(tmp_path / "r.sqlite")
    attempts = {e.id: db.execute("SELECT attempt, correct, error FROM attempts WHERE example_id=? ORDER BY attempt",
                                 (e.id,)).fetchall() for e in ex}
    # a failed request is not a gold-filter attempt: it is re-sent, and recorded in request_errors
    assert [len(attempts[e.id]) for e in ex] == [1, 3, 1, 1, 3]
    assert attempts[ex[1].id][0][2] == "empty output" and attempts[ex[1].id][1][2] == "unparseable answer"
    requests = db.execute("SELECT example_id, attempt, error FROM request_errors ORDER BY example_id").fetchall()
    assert sorted((e, a) for e, a, _ in requests) == sorted([(ex[2].id, 1), (ex[3].id, 1)])
    assert all(err == "request failed" for _, _, err in requests)
    assert stats["kept"] == 4 and stats["failed"] == 1 and stats["attempts"] == 9 and stats["pending"] == 0
    assert db.execute("SELECT COUNT(*) FROM rationales").fetchone()[0] == 4
    settings = RationaleStore(tmp_path / "r.sqlite").settings()
    assert settings["teacher"]["base_url"] == url and settings["teacher"]["model"] == "teacher"
    for f in tmp_path.glob("r.sqlite*"):  # database, WAL and shared-memory files
        assert b"sk-do-not-store-me" not in f.read_bytes()


@pytest.mark.slow
def test_judge_over_the_openai_backend_and_cli(faulty_server, tmp_path):
    from typer.testing import CliRunner

    from raftlab.backends import get_backend
    from raftlab.cli.main import app
    from raftlab.rationales import judge_rationales

    url, state = faulty_server
    ex = TASK.load("train", limit=3)
    run = tmp_path / "run"
    generate_rationales(AttemptTeacher(ex, {e.id: 1 for e in ex}), TASK, ex, run / "rationales.sqlite",
                        max_retries=1, progress=False)
    state["plans"] = {ex[0].question: ["The steps add up.\nHelpful"], ex[1].question: ["garbage"],
                      ex[2].question: [500, "One step is wrong.\nVerdict: Unhelpful"]}
    judge = get_backend(f"openai:judge@{url}", max_retries=0, on_error="empty")
    first = judge_rationales(judge, run / "rationales.sqlite", progress=False, retry_backoff=0.01)
    # the 500 is a request error, re-sent at once: its verdict arrives in the same run
    assert {k: first[k] for k in ("helpful", "unhelpful", "unknown", "errors", "pending")} == {
        "helpful": 1, "unhelpful": 1, "unknown": 1, "errors": 1, "pending": 0}
    res = CliRunner().invoke(app, ["rationales", "judge", "--run", str(run), "--judge", f"openai:judge@{url}",
                                   "--sample", "3"])
    assert res.exit_code == 0, res.output
    second = json.loads(res.stdout)  # the progress bar goes to stderr
    assert {k: second[k] for k in ("helpful", "unhelpful", "unknown", "errors", "judged")} == {
        "helpful": 1, "unhelpful": 1, "unknown": 1, "errors": 0, "judged": 3}
    assert state["requests"] == {ex[0].question: 1, ex[1].question: 1, ex[2].question: 2}  # nothing judged twice
    raw = dict(sqlite3.connect(run / "rationales.sqlite").execute("SELECT example_id, raw FROM judgments"))
    assert raw[ex[1].id] == "#$%^ qwerty"


@pytest.mark.slow
def test_tiny_teacher_over_loopback_server(tmp_path):
    from raftlab.backends import get_backend
    from raftlab.backends.hf import HFBackend
    from raftlab.serve import serve_in_thread

    url, stop = serve_in_thread(HFBackend("tiny"), model_name="tiny")
    try:
        teacher = get_backend(f"openai:tiny@{url}")
        ex = TASK.load("train", limit=3)
        stats = generate_rationales(teacher, TASK, ex, tmp_path / "r.sqlite", max_retries=2, max_new_tokens=8,
                                    progress=False)
    finally:
        stop()
    assert stats["kept"] + stats["failed"] == 3  # a random model: bookkeeping, not quality
    assert 2 * stats["failed"] + stats["kept"] <= stats["attempts"] <= 6
    import hashlib

    rows = RationaleStore(tmp_path / "r.sqlite").attempt_rows()
    prompts = {e.id: TASK.teacher_prompt(e, "A", 3) for e in ex}
    for r in rows:
        assert r["prompt_hash"] == hashlib.sha256(prompts[r["example_id"]].encode()).hexdigest()[:16]
        assert r["error"] != "request failed" and r["latency"] > 0
        assert r["tokens"] > 0 or not r["raw"].strip()  # usage reported by the server


@pytest.mark.parametrize("raw, expected", [
    ("A then B. So the answer is 5.", "A then B."),
    ("x. Therefore, the answer is (B).", "x."),
    ("The answer is 3. Wait, recheck: 1 + 2 = 3. The answer is 3.", "The answer is 3. Wait, recheck: 1 + 2 = 3."),
    ("no cue at all", "no cue at all"),
    ("2 + 3 = 5.\nTherefore, the final answer is 5.", "2 + 3 = 5."),
    ("Add them: 5.\n\n**The answer is 5**", "Add them: 5."),
    ("Count the legs.\nAnswer: 12", "Count the legs."),
    ("In conclusion, the correct answer is (C).", ""),
    # the cases on which the teacher filter's and the training target's strippers used to disagree
    ("Add them.\nAnswer: 5", "Add them."),
    ("Add them.\n**The answer is 5**", "Add them."),
    ("Add them. The answer would be 5.", "Add them."),
    ("3 + 2 = 5, so the answer is 5.", "3 + 2 = 5"),
])
def test_strip_answer_sentence(raw, expected):
    assert strip_answer_sentence(raw) == expected


@pytest.mark.parametrize("raw", ["Add them.\nAnswer: 5", "Add them.\n**The answer is 5**",
                                 "Add them. The answer would be 5.", "3 + 2 = 5, so the answer is 5."])
def test_kept_rationale_and_training_target_strip_alike(raw):
    """The rationale the gold filter keeps and the training target built from the raw text are the same body."""
    from raftlab.tasks import prompts

    body = strip_answer_sentence(raw)
    assert prompts.target_text("5", raw) == prompts.target_text("5", body) == f" {body.rstrip('.')}. The answer is 5."


@pytest.mark.parametrize("text, verdict", [
    ("The steps are right.\nHelpful", "helpful"),
    ("It contains an error.\nVerdict: Unhelpful", "unhelpful"),
    ("Helpful at first, but wrong. Final: not helpful", "unhelpful"),
    ("I cannot decide.", "unknown"),
    ("The rationale isn't helpful.", "unhelpful"),
    ("Analysis: it skips no step.\n**Verdict:** Helpful.", "helpful"),
])
def test_parse_verdict(text, verdict):
    assert parse_verdict(text) == verdict


def test_judge_is_stored_and_resumable(tmp_path):
    from raftlab.backends.base import Generation
    from raftlab.rationales import judge_rationales

    examples = TASK.load("train", limit=6)
    generate_rationales(AttemptTeacher(examples, {e.id: 1 for e in examples}), TASK, examples,
                        tmp_path / "r.sqlite", max_retries=1, progress=False)

    class Judge:
        name, calls = "judge", 0

        def generate(self, prompts, params):
            Judge.calls += len(prompts)
            return [[Generation(text="Looks fine.\nHelpful" if i % 2 else "Bad.\nUnhelpful")]
                    for i in range(len(prompts))]

    res = judge_rationales(Judge(), tmp_path / "r.sqlite", sample=4, progress=False)
    assert res["judged"] == 4 and res["helpful"] + res["unhelpful"] == 4
    # the sample's verdicts by id, in id order: the study's judge.json takes them as they are
    assert list(res["verdicts"]) == sorted(res["verdicts"]) and len(res["verdicts"]) == 4
    assert sorted(res["verdicts"].values()) == sorted(["helpful"] * res["helpful"] + ["unhelpful"] * res["unhelpful"])
    again = judge_rationales(Judge(), tmp_path / "r.sqlite", sample=4, progress=False)
    assert Judge.calls == 4  # second run judged nothing new
    assert again["verdicts"] == res["verdicts"]  # the same seeded sample


def test_judge_request_errors_are_not_stored_and_are_retried(tmp_path):
    from raftlab.backends.base import Generation
    from raftlab.rationales import judge_rationales

    examples = TASK.load("train", limit=4)
    generate_rationales(AttemptTeacher(examples, {e.id: 1 for e in examples}), TASK, examples,
                        tmp_path / "r.sqlite", max_retries=1, progress=False)

    class FlakyJudge:
        name = "flaky"

        def __init__(self, fail):
            self.fail = fail

        def generate(self, prompts, params):
            return [[Generation(text="", finish_reason="error") if self.fail and i == 0 else
                     Generation(text="I am not sure what to make of it.")] for i in range(len(prompts))]

    first = judge_rationales(FlakyJudge(True), tmp_path / "r.sqlite", progress=False, request_retries=2,
                             retry_backoff=0.0)
    # the failing request was sent 3 times (1 + 2 re-sends), then its rationale stays pending
    assert (first["judged"], first["errors"], first["pending"], first["unknown"]) == (3, 3, 1, 3)
    second = judge_rationales(FlakyJudge(False), tmp_path / "r.sqlite", progress=False)
    assert (second["judged"], second["errors"], second["pending"], second["unknown"]) == (4, 0, 0, 4)
    raw = sqlite3.connect(tmp_path / "r.sqlite").execute("SELECT raw, judge FROM judgments").fetchall()
    assert len(raw) == 4 and all(r == "I am not sure what to make of it." and "flaky" in j for r, j in raw)


def test_sampling_params_reach_the_teacher(tmp_path):
    from raftlab.backends.base import Generation, SamplingParams

    seen = []

    class Recorder:
        name = "recorder"

        def generate(self, prompts, params):
            seen.append(params)
            return [[Generation(text="no idea")] for _ in prompts]

    examples = TASK.load("train", limit=2)
    stats = generate_rationales(Recorder(), TASK, examples, tmp_path / "r.sqlite", max_retries=2, seed=3,
                                sampling=SamplingParams(temperature=0.3, top_p=0.9, max_new_tokens=17, seed=None),
                                progress=False)
    assert [(p.temperature, p.top_p, p.max_new_tokens, p.n, p.seed) for p in seen] == [
        (0.3, 0.9, 17, 1, 3001), (0.3, 0.9, 17, 1, 3002)]
    assert stats["failed"] == 2 and stats["error_counts"] == {"unparseable answer": 4}
    assert RationaleStore(tmp_path / "r.sqlite").settings()["sampling"]["max_new_tokens"] == 17
    with pytest.raises(ValueError, match="style"):
        generate_rationales(Recorder(), TASK, examples, tmp_path / "other.sqlite", style="Z", progress=False)
    assert not (tmp_path / "other.sqlite").exists() or not RationaleStore(tmp_path / "other.sqlite").settings()


@pytest.mark.slow
def test_blank_rationales_lengths(tmp_path):
    from raftlab.models import load_tokenizer

    examples = TASK.load("train", limit=2)
    examples = [examples[0].model_copy(update={"rationale": "one two three"}),
                examples[1].model_copy(update={"rationale": "one two three four five"})]
    mean = make_blank_rationales(examples)
    assert [e.rationale.split() for e in mean] == [[f"<Think_{i}>" for i in range(4)]] * 2
    own = make_blank_rationales(examples, length="own")
    assert [len(e.rationale.split()) for e in own] == [3, 5]
    tok = load_tokenizer("tiny")
    blank = make_blank_rationales(examples, 3, tok, out=tmp_path / "b.jsonl")
    assert load_jsonl(tmp_path / "b.jsonl")[0].rationale == blank[0].rationale == "<Think_0> <Think_1> <Think_2>"
    before = tok("<Think_2>", add_special_tokens=False).input_ids
    ids = add_think_tokens(tok, 3)
    assert len(before) > 1 and len(set(ids)) == 3  # several pieces before, one new id each after
    seq = tok(blank[0].rationale, add_special_tokens=False).input_ids
    assert [i for i in seq if i in ids] == ids  # one real token per <Think_i>, in order
    assert tok.decode([i for i in seq if i not in ids]).strip() == ""  # the rest is only the separating spaces
    assert tok.convert_ids_to_tokens(ids) == think_tokens(3)


def test_cli_generate_and_bad_input_names_the_line(tmp_path):
    from typer.testing import CliRunner

    from raftlab.cli.main import app

    res = CliRunner().invoke(app, ["rationales", "generate", "--task", "synth_arith", "--teacher", "oracle",
                                   "--limit", "4", "--n", "3", "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert len(load_jsonl(tmp_path / "run" / "rationales.jsonl")) == 3
    stats = CliRunner().invoke(app, ["rationales", "stats", str(tmp_path / "run")])
    # the oracle decodes its 4 prompts of a call together (--concurrency 4): the one call keeps all 4, the 4th
    # stored but neither exported nor judged
    assert json.loads(stats.output)["kept"] == 4
    res = CliRunner().invoke(app, ["rationales", "export", str(tmp_path / "run"), "--out", str(tmp_path / "e.jsonl")])
    assert res.exit_code == 0 and len(load_jsonl(tmp_path / "e.jsonl")) == 3, res.output
    ex = TASK.load("train", limit=1)[0]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(ex.model_dump_json() + "\n{not json\n" + ex.model_copy(update={"id": "e", "question": ""})
                   .model_dump_json() + "\n")
    res = CliRunner().invoke(app, ["rationales", "generate", "--task", "synth_arith", "--teacher", "oracle",
                                   "--data", str(bad), "--out", str(tmp_path / "run2")])
    assert res.exit_code == 2
    assert "bad.jsonl:2" in res.output and "bad.jsonl:3" in res.output and "question" in res.output

    coin = get_task("synth_coinflip").load("train", limit=1)[0]
    bad.write_text(coin.model_dump_json() + "\n" + coin.model_copy(update={"id": "z", "label": "Z"}).model_dump_json())
    res = CliRunner().invoke(app, ["rationales", "generate", "--task", "synth_coinflip", "--teacher", "oracle",
                                   "--data", str(bad), "--out", str(tmp_path / "run3")])
    assert res.exit_code == 2 and "bad.jsonl:2" in res.output and "'Z' is not one of the options" in res.output


def test_cli_export_blank_and_rerun_conflict(tmp_path):
    from typer.testing import CliRunner

    from raftlab.cli.main import app

    run = tmp_path / "run"
    base = ["rationales", "generate", "--task", "synth_arith", "--teacher", "oracle", "--limit", "3", "--out", str(run)]
    assert CliRunner().invoke(app, base).exit_code == 0
    res = CliRunner().invoke(app, [*base, "--max-retries", "4"])
    assert res.exit_code == 2 and "max_retries" in res.output and "--force-new-run" in res.output
    assert CliRunner().invoke(app, [*base, "--max-retries", "4", "--force-new-run"]).exit_code == 0
    res = CliRunner().invoke(app, ["rationales", "export", str(run), "--out", str(tmp_path / "x.jsonl")])
    assert res.exit_code == 0 and len(load_jsonl(tmp_path / "x.jsonl")) == 3
    res = CliRunner().invoke(app, ["rationales", "blank", "--run", str(run), "--length", "own",
                                   "--out", str(tmp_path / "b.jsonl")])
    assert res.exit_code == 0, res.output
    exported = {e.id: e for e in load_jsonl(tmp_path / "x.jsonl")}
    for e in load_jsonl(tmp_path / "b.jsonl"):
        assert e.rationale.split() == [f"<Think_{i}>" for i in range(len(exported[e.id].rationale.split()))]
    res = CliRunner().invoke(app, ["rationales", "blank", "--run", str(run), "--length", "long", "--out", "y"])
    assert res.exit_code != 0 and "task_mean" in res.output
