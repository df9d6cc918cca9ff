"""Teacher rationale generation with the gold filter and retries.

Passes over the data: in each pass every example that has no kept rationale yet gets its next attempts (fresh
seeded samples; ``samples_per_prompt`` of them drawn as n samples of one request, so that a local teacher prefills
the prompt once and decodes them together). The teacher stops at its first complete answer sentence
(:func:`raftlab.tasks.answers.answer_stop_pattern`; the output is cut there when the backend cannot stop on a
pattern), so the first answer cue decides, as in the paper's official code. A rationale is kept only if it passes
the gold filter (:mod:`raftlab.rationales.gold_filter`); an example's samples after its first kept one are
discarded, not recorded.
Passes continue until ``n`` rationales are kept or every remaining example has used ``max_retries`` attempts (then
it is recorded as a failure with its attempts). Every attempt is committed to the store as it arrives.

Traversals: with ``traversals > 1`` and fewer than ``n`` kept after going through the data, the data is traversed
again (the paper: "we recursively traverse the dataset until we get enough data"): traversal *t* adds a copy of
every example with id ``<id>#t<t>`` (:func:`traversal_copy`), whose attempts draw with seeds offset by
``t * TRAVERSAL_SEED_STRIDE``, so a question kept before gets a fresh rationale. Traversal stops at ``n`` kept, after
``traversals``, or after one that kept nothing.

Two kinds of failure are kept apart. *The teacher answered and was wrong* (or unparseable) is an attempt of the
gold filter. *The request failed* (connection error, timeout, 429, 5xx, a malformed response) is not: it is
retried with exponential backoff under its own budget (``request_retries``), recorded in the store's
``request_errors``, and an example whose requests keep failing stays **pending**. It is neither kept nor failed,
it gets no further requests in this run, and a plain rerun resumes it with the same attempt number and seed.
"""

from __future__ import annotations

import hashlib
import json
import queue
import statistics
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from raftlab.backends import describe_backend
from raftlab.backends.base import Backend, Generation, SamplingParams
from raftlab.rationales.store import RationaleStore
from raftlab.schema import INVALID, Example
from raftlab.storage import write_json, write_jsonl
from raftlab.rationales.gold_filter import REASONS, judge_output
from raftlab.tasks.answers import answer_stop_pattern, cut_at_answer, strip_answer_sentence

#: Seed offset between traversals of the data (larger than any attempt count).
TRAVERSAL_SEED_STRIDE = 1_000_000


def traversal_id(example_id: str, traversal: int) -> str:
    """The id of an example's copy in traversal ``traversal`` (0: the first, the example's own id)."""
    return example_id if traversal == 0 else f"{example_id}#t{traversal}"


def traversal_copy(ex: Example, traversal: int) -> Example:
    """The example as traversal ``traversal`` (0: the first, the example itself) sends it to the teacher."""
    if traversal == 0:
        return ex
    return ex.model_copy(update={"id": traversal_id(ex.id, traversal),
                                 "meta": {**ex.meta, "traversal": traversal, "source_id": ex.id}})


def _prompt_hash(prompt: str) -> str:
    return hashlib.sha256(prompt.encode()).hexdigest()[:16]


def _open(store: RationaleStore | str | Path, writer: bool = True) -> RationaleStore:
    return store if isinstance(store, RationaleStore) else RationaleStore(store, writer=writer)


def _uses_threads(backend: Backend) -> bool:
    """Backends whose ``generate`` may be called from several threads at once (``Backend.thread_safe``)."""
    return bool(getattr(backend, "thread_safe", False))


def teacher_backend(spec: str, options: dict[str, Any] | None, concurrency: int) -> Backend:
    """The teacher's backend sized for :func:`generate_rationales`: a concurrent one (openai) keeps
    ``concurrency`` requests in flight; a local hf one decodes ``concurrency`` prompts, each with all the samples
    of its request, in one forward (its batch size counts prompts)."""
    from raftlab.backends import get_backend, is_thread_safe, parse_spec

    if is_thread_safe(spec):
        return get_backend(spec, options, concurrency=concurrency)
    if parse_spec(spec)[0] == "hf":
        return get_backend(spec, options, batch_size=concurrency)
    return get_backend(spec, options)


def default_samples_per_prompt(spec: str) -> int:
    """Attempts drawn per request unless set: 4 for a local teacher (its samples share one prefill), 1 for an API
    teacher (every sample is billed, and those after the first kept one are discarded)."""
    from raftlab.backends import is_thread_safe

    return 1 if is_thread_safe(spec) else 4


#: Re-sends of a failed request (not gold-filter attempts), and the first backoff; it doubles up to 30 s.
REQUEST_RETRIES = 4
RETRY_BACKOFF_S = 1.0


def _call(backend: Backend, prompts: list[str],
          params: SamplingParams) -> tuple[list[list[Generation] | None], list[str | None], float]:
    """One ``generate`` request: the ``params.n`` generations of each prompt, per-prompt *request* errors (None:
    the teacher answered), wall time. Never raises."""
    t0 = time.perf_counter()
    want = max(1, params.n)
    try:
        rows = backend.generate(prompts, params)
        if len(rows) != len(prompts) or any(len(row) != want for row in rows):
            raise ValueError(f"malformed response: {[len(r) for r in rows]} samples for {len(prompts)} prompts "
                             f"x {want}")
        gens: list[list[Generation] | None] = [list(row) for row in rows]
        errors = [None if all(g.finish_reason != "error" for g in row) else "request failed" for row in rows]
    except Exception as exc:  # noqa: BLE001 - a failed request is retried, then the example stays pending
        gens, errors = [None] * len(prompts), [f"{type(exc).__name__}: {exc}"[:500]] * len(prompts)
    return gens, errors, time.perf_counter() - t0


def request_with_retries(backend: Backend, prompts: list[str], params: SamplingParams, retries: int,
                         backoff: float, on_failure: Any = None) -> tuple[list[list[Generation] | None],
                                                                          list[str | None], float]:
    """:func:`_call`, re-sending the prompts whose request failed up to ``retries`` times with exponential backoff
    (``backoff``, doubling, at most 30 s). ``on_failure(index, error)`` is told of every failed request."""
    gens, errors, wall = _call(backend, prompts, params)
    for k in range(retries + 1):
        failed = [i for i, e in enumerate(errors) if e is not None]
        for i in failed:
            if on_failure is not None:
                on_failure(i, errors[i])
        if not failed or k == retries:
            break
        time.sleep(min(30.0, backoff * 2**k))
        again, again_errors, more = _call(backend, [prompts[i] for i in failed], params)
        for i, g, e in zip(failed, again, again_errors):
            gens[i], errors[i] = g, e
        wall += more
    return gens, errors, wall


def base_params(sampling: SamplingParams | None, temperature: float, max_new_tokens: int, seed: int,
                 stop_regex: str | None) -> SamplingParams:
    """The teacher's sampling; it stops at the first complete answer sentence (the first cue decides)."""
    if sampling is None:
        return SamplingParams(n=1, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed,
                              stop_regex=stop_regex)
    return replace(sampling, n=1, seed=seed if sampling.seed is None else sampling.seed,
                   stop_regex=sampling.stop_regex or stop_regex)


def _sampling_settings(params: SamplingParams) -> dict[str, Any]:
    d = params.to_dict()
    d.pop("n")
    return d


def generate_rationales(
    backend: Backend,
    task: Any,
    examples: Sequence[Example],
    store: RationaleStore | str | Path,
    n: int | None = None,
    *,
    max_retries: int = 10,
    style: str = "A",
    length: int = 3,
    concurrency: int = 4,
    samples_per_prompt: int = 1,
    sampling: SamplingParams | None = None,
    temperature: float = 0.7,
    max_new_tokens: int = 256,
    seed: int = 0,
    traversals: int = 1,
    tokenizer: Any = None,
    force_new_run: bool = False,
    progress: bool = True,
    request_retries: int = REQUEST_RETRIES,
    retry_backoff: float = RETRY_BACKOFF_S,
) -> dict[str, Any]:
    """Generate and gold-filter rationales for ``examples`` into ``store``; returns :func:`run_stats`
    (also written to ``stats.json`` next to the store).

    ``sampling`` (else ``temperature``/``max_new_tokens``) sets the teacher's sampling. An example with *m*
    attempts made gets its next ``r = min(samples_per_prompt, max_retries - m)`` attempts as ``n = r`` samples of
    one request with seed ``seed * 1000 + m + 1`` (attempt *m + 1 + j* is sample *j*; with ``samples_per_prompt=1``
    attempt *a* uses seed ``seed * 1000 + a``); samples after its first kept one are discarded. At most
    ``concurrency`` requests are in flight: remote backends (``openai``) get one request per example, each on its
    own thread, and each result is committed as it arrives; local backends get batches of ``concurrency`` prompts.
    ``traversals``: how many times the data may be gone through to keep ``n`` (module docstring).
    ``force_new_run`` discards a store made with other settings.
    Failed requests are re-sent ``request_retries`` times (backoff ``retry_backoff`` s, doubling); examples whose
    requests keep failing are left pending (``stats["pending"]``; a rerun resumes them).
    """
    from tqdm.auto import tqdm

    if max_retries < 1:
        raise ValueError("max_retries must be at least 1")
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if samples_per_prompt < 1:
        raise ValueError("samples_per_prompt must be at least 1")
    if traversals < 1:
        raise ValueError("traversals must be at least 1")
    originals = examples = list(examples)
    dup = [i for i, c in Counter(e.id for e in examples).items() if c > 1]
    if dup:
        raise ValueError(f"example ids must be unique ({len(dup)} repeated, e.g. {dup[0]!r})")
    if examples:
        task.teacher_prompt(examples[0], style, length)  # a bad style/length fails here, before any write
    n = len(examples) if n is None else n
    # chat teachers (API, or a local instruct model) send the paper's system message (App. D.1); an API teacher
    # may be given its own (backend option system_prompt); describe() records it
    backend = backend.as_teacher() if hasattr(backend, "as_teacher") else backend
    base = base_params(sampling, temperature, max_new_tokens, seed, answer_stop_pattern(task.answer_type))
    settings = {"task": task.name, "style": style, "length": length, "max_retries": max_retries,
                "sampling": _sampling_settings(base), "teacher": describe_backend(backend)}
    db = _open(store)
    db.bind_settings(settings, force_new_run)
    db.add_examples(examples)
    run_id = db.start_run(settings, n, len(examples))
    made = db.attempts_made()
    kept = db.kept_ids() & {traversal_id(e.id, t) for t in range(traversals) for e in examples}
    bar = tqdm(total=min(n, len(examples) * traversals), desc=f"rationales {task.name}", unit="kept",
               disable=not progress)
    bar.update(min(len(kept), n))
    counts = {"failed": db.count("failures"), "attempts": db.count("attempts"), "request_errors": 0}
    counts["at_start"] = counts["attempts"]
    started, shown = time.monotonic(), [0.0]
    pending: dict[str, str] = {}  # example id -> last request error (no more requests for it in this run)

    def request_failed(ex: Example, attempt: int, error: str) -> None:
        db.record_request_error(ex.id, attempt, error)
        counts["request_errors"] += 1

    def give_up(ex: Example, error: str) -> None:
        pending[ex.id] = error
        show(True)

    def record(ex: Example, first: int, prompt: str, gens: list[Generation], latency: float) -> None:
        """The attempts ``first, first + 1, ...`` of ``ex`` (one per sample), up to its first kept one."""
        for attempt, gen in enumerate(gens, start=first):
            raw, answer, correct, err, rationale = check_attempt(task, ex, prompt, gen, base.stop_regex)
            failed = not correct and attempt == max_retries
            db.record_attempt(ex.id, attempt, _prompt_hash(prompt), raw, answer, correct, err, latency,
                              gen.num_tokens, rationale, failed_for_good=failed)
            made[ex.id] = attempt
            counts["attempts"] += 1
            counts["failed"] += failed
            if correct:
                kept.add(ex.id)
                bar.update(int(len(kept) <= n))
                break
        show(len(kept) >= n)

    def show(force: bool) -> None:
        now = time.monotonic()
        if force or now - shown[0] >= 0.5:  # throttled: a postfix refresh per attempt floods logs
            shown[0] = now
            rate = (counts["attempts"] - counts["at_start"]) / max(1e-9, now - started)
            bar.set_postfix(kept=len(kept), failed=counts["failed"], attempts=counts["attempts"],
                            pending=len(pending), attempts_per_s=f"{rate:.2f}")

    status, raised = "interrupted", True
    try:
        for traversal in range(traversals):
            if traversal:
                if len(kept) >= n or pending:
                    break
                examples = [traversal_copy(e, traversal) for e in originals]
                db.add_examples(examples)
            while len(kept) < n:
                left = [e for e in examples if e.id not in kept and e.id not in pending
                        and made.get(e.id, 0) < max_retries]
                if not left:
                    break
                m = min(made.get(e.id, 0) for e in left)  # a pass: the examples with the fewest attempts
                todo = deque(e for e in left if made.get(e.id, 0) == m)
                seed = (base.seed or 0) * 1000 + m + 1 + traversal * TRAVERSAL_SEED_STRIDE
                params = replace(base, n=min(samples_per_prompt, max_retries - m), seed=seed)
                send = _Sender(backend, params, m + 1, request_retries, retry_backoff, request_failed, give_up,
                               record)
                if _uses_threads(backend):
                    _pass_threaded(send, task, todo, style, length, concurrency, n, kept)
                else:
                    _pass_batched(send, task, todo, style, length, concurrency, n, kept)
            if not any(e.id in kept for e in examples):
                break  # a whole traversal kept nothing: another would not either
        status = "finished" if not pending else f"incomplete: {len(pending)} examples pending"
        raised = False
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"error: {type(exc).__name__}: {exc}"[:500]
        raise
    finally:
        show(True)
        bar.close()
        db.finish_run(run_id, status)
        if raised and db is not store:
            db.close()
    stats = {**_stats(db, tokenizer), "pending": len(pending), "request_errors_this_run": counts["request_errors"],
             "last_request_error": next(reversed(pending.values()), None)}
    write_json(db.path.with_name("stats.json"), stats)
    if db is not store:
        db.close()
    return stats


def check_attempt(task: Any, ex: Example, prompt: str, gen: Generation,
           stop_regex: str | None) -> tuple[str, str, bool, str | None, str | None]:
    """(raw, parsed answer, kept, error or rejection reason, rationale to keep) for one teacher output
    (:mod:`raftlab.rationales.gold_filter`), cut at its first complete answer sentence where the backend could
    not stop there (an API teacher)."""
    raw = cut_at_answer(gen.text, stop_regex)[0]
    if not raw.strip():
        return raw, INVALID, False, "empty output", None
    verdict = judge_output(task, ex, raw, prompt)
    return raw, verdict.answer, verdict.kept, verdict.reason, verdict.rationale


class _Sender:
    """Sends one pass's requests: re-sends failed ones, records the teacher's answers as attempts, and leaves
    examples whose requests keep failing pending."""

    def __init__(self, backend, params, attempt, retries, backoff, request_failed, give_up, record) -> None:
        self.backend, self.params, self.attempt = backend, params, attempt
        self.retries, self.backoff = retries, backoff
        self.request_failed, self.give_up, self.record = request_failed, give_up, record

    def commit(self, batch: list[Example], prompts: list[str], result: tuple[list, list, float],
               failures: list[tuple[int, str]]) -> None:
        gens, errors, wall = result
        for i, error in failures:
            self.request_failed(batch[i], self.attempt, error)
        for ex, prompt, samples, err in zip(batch, prompts, gens, errors):
            if err is None:
                self.record(ex, self.attempt, prompt, samples, wall)
            else:
                self.give_up(ex, err)


def _send_collecting(sender: _Sender, batch: list[Example], prompts: list[str]) -> tuple[tuple, list]:
    failures: list[tuple[int, str]] = []
    result = request_with_retries(sender.backend, prompts, sender.params, sender.retries, sender.backoff,
                                  on_failure=lambda i, e: failures.append((i, e)))
    return result, failures


#: A local backend's ``generate`` calls carry this many times ``concurrency`` prompts: it decodes ``concurrency``
#: of them at a time and, as their samples finish, the next ones join (continuous batching), so the batch drains
#: once per call rather than once per ``concurrency`` prompts. Attempts are stored per call.
LOCAL_CALL_BATCHES = 4


def _pass_batched(sender: _Sender, task, todo, style, length, concurrency, n, kept) -> None:
    """One pass, :data:`LOCAL_CALL_BATCHES` x ``concurrency`` prompts per ``generate`` call (a local backend
    decodes ``concurrency`` at a time). Near the ``n``-th kept rationale a call still carries ``concurrency``
    prompts (one decoding batch), not just the shortfall: a few-prompt call costs a whole generation for a few
    attempts. The extra rationales this may keep are stored; :func:`export_jsonl` exports the first ``n``."""
    while todo and len(kept) < n:
        size = min(concurrency * LOCAL_CALL_BATCHES, max(n - len(kept), concurrency), len(todo))
        batch = [todo.popleft() for _ in range(size)]
        prompts = [task.teacher_prompt(e, style, length) for e in batch]
        sender.commit(batch, prompts, *_send_collecting(sender, batch, prompts))


def _pass_threaded(sender: _Sender, task, todo, style, length, concurrency, n, kept) -> None:
    """One pass, one request per example on at most ``concurrency`` threads; each result is committed as it
    completes (by this thread: the store is written from one thread only). The request threads are daemons:
    Ctrl-C stops the run at once (unfinished requests are lost and redone on resume; nothing committed is)."""
    results: queue.Queue = queue.Queue()

    def request(ex: Example, prompt: str) -> None:
        results.put(([ex], [prompt], *_send_collecting(sender, [ex], [prompt])))

    in_flight = 0
    while todo or in_flight:
        while todo and in_flight < concurrency and len(kept) + in_flight < n:
            ex = todo.popleft()
            prompt = task.teacher_prompt(ex, style, length)
            threading.Thread(target=request, args=(ex, prompt), daemon=True, name="teacher-request").start()
            in_flight += 1
        if not in_flight:
            break
        batch, prompts, result, failures = results.get()
        in_flight -= 1
        sender.commit(batch, prompts, result, failures)


def run_stats(store: RationaleStore | str | Path, tokenizer: Any = None) -> dict[str, Any]:
    """Kept ratio, attempts per example, rationale length (tokens with a tokenizer, else words)."""
    db = _open(store, writer=False)
    try:
        return _stats(db, tokenizer)
    finally:
        if db is not store:
            db.close()


def _stats(db: RationaleStore, tokenizer: Any) -> dict[str, Any]:
    attempts = db.attempt_rows()
    per_example: dict[str, int] = {}
    for a in attempts:
        per_example[a["example_id"]] = max(per_example.get(a["example_id"], 0), a["attempt"])
    kept = db.kept()
    lengths = [len(tokenizer(r, add_special_tokens=False).input_ids) if tokenizer else len(r.split())
               for _, r, _ in kept]
    attempted = len(per_example)
    out = {
        "task": (db.settings() or {}).get("task"),
        "examples_attempted": attempted,
        "kept": len(kept),
        "failed": db.count("failures"),
        "attempts": len(attempts),
        "errors": sum(a["error"] is not None and a["error"] not in REASONS for a in attempts),
        "examples_in_progress": attempted - len(kept) - db.count("failures"),
        "kept_ratio": len(kept) / attempted if attempted else 0.0,
        "attempts_per_example": len(attempts) / attempted if attempted else 0.0,
        "attempts_per_kept": statistics.mean(a for _, _, a in kept) if kept else None,
        "kept_at_attempt": {str(k): v for k, v in sorted(Counter(a for _, _, a in kept).items())},
        "error_counts": dict(Counter(a["error"] for a in attempts if a["error"] is not None).most_common(10)),
        "rejections": {reason: sum(a["error"] == reason for a in attempts) for reason in REASONS},
        "latency_mean_s": statistics.mean(a["latency"] for a in attempts) if attempts else None,
        "teacher_tokens": sum(a["tokens"] or 0 for a in attempts),
        "length_unit": "tokens" if tokenizer else "words",
        "rationale_length_mean": statistics.mean(lengths) if lengths else None,
        "rationale_length_median": statistics.median(lengths) if lengths else None,
    }
    return out


def export_jsonl(store: RationaleStore | str | Path, path: str | Path, limit: int | None = None) -> int:
    """Write the kept rationales as training data: Examples with ``rationale`` filled, the first ``limit`` kept
    in the examples' order (all without). Returns the count."""
    db = _open(store, writer=False)
    try:
        rows = db.kept(limit)
    finally:
        if db is not store:
            db.close()
    return write_jsonl((ex.model_copy(update={"rationale": rationale, "meta": {**ex.meta, "rationale_attempt": attempt}})
                        for ex, rationale, attempt in rows), path)  # atomic: never a half-written training file
