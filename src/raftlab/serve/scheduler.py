"""Request batching for ``raftlab serve``: one worker thread owns the backend and serves a bounded queue.

Generation requests that arrive while the model is busy wait in the queue; when the worker is free it takes the
oldest one together with every other waiting request that has the same sampling settings and runs them as one
``backend.generate`` call (the hf backend then decodes all their sequences in one batch). Because raftlab seeds
every sample from ``(seed, prompt, sample index)``, a request gets the same samples batched or alone. Other model
work (log-prob scoring) runs in the same worker, one job at a time, so the backend is never used from two threads.
A generation job's ``prepare`` step (the server's prompt rendering and token counting) runs there too, because it
uses the backend's tokenizer, which must not be used from two threads either (HF fast tokenizers are not
thread-safe).

A full queue refuses new work with :class:`ServerBusy` (the server answers 503). A job can be cancelled (the
server does it when the client disconnects): a waiting job is dropped, and a running one stops at the next decoding
step when the backend supports it (``backend.cancellable``; the hf backend checks once per token).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from raftlab.backends.base import Generation, SamplingParams


class ServerBusy(RuntimeError):
    """The queue is full; try again later."""


class Cancelled(RuntimeError):
    """The job was cancelled before it finished."""


@dataclass(eq=False)
class Job:
    """One unit of model work: a generation (``prompts`` with ``params``) or a function of the backend."""

    prompts: list[Any] = field(default_factory=list)
    params: SamplingParams | None = None
    call: Callable[[Any], Any] | None = None
    #: ``prepare(backend) -> prompts``, run in the worker just before generation (it may use the tokenizer); its
    #: prompts replace ``prompts``, and an error it raises fails this job alone
    prepare: Callable[[Any], list[Any]] | None = None
    result: Any = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)
    cancelled: threading.Event = field(default_factory=threading.Event)
    #: called (from the worker thread) once the job is done, cancelled or failed
    on_done: Callable[[Job], None] | None = None

    def cancel(self) -> None:
        self.cancelled.set()

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()
        if self.on_done is not None:
            self.on_done(self)

    def wait(self, timeout: float | None = None) -> Any:
        """Block until done; return the result or raise the job's error."""
        if not self.done.wait(timeout):
            raise TimeoutError("job did not finish in time")
        if self.error is not None:
            raise self.error
        return self.result


@dataclass
class SchedulerStats:
    jobs: int = 0
    batches: int = 0
    largest_batch: int = 0  # requests combined into one generate call
    cancelled: int = 0
    refused: int = 0


class BatchScheduler:
    """Serve jobs for ``backend`` from one worker thread.

    ``max_queue``: waiting jobs beyond which :meth:`submit` raises :class:`ServerBusy`. ``max_batch_sequences``:
    most sequences (prompts x n) combined into one generate call. ``combine=False`` serves one request at a time
    (``raftlab serve --no-batching``; the baseline of ``benchmarks/bench_serve.py``).
    """

    def __init__(self, backend: Any, *, max_queue: int = 64, max_batch_sequences: int = 256,
                 combine: bool = True) -> None:
        self.backend, self.max_queue, self.combine = backend, max(1, max_queue), combine
        self.max_batch_sequences = max(1, max_batch_sequences)
        self.stats = SchedulerStats()
        self._waiting: deque[Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._loop, name="raftlab-serve-worker", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------ submit
    def submit(self, job: Job) -> Job:
        with self._cond:
            if self._closed:
                raise RuntimeError("scheduler is closed")
            if len(self._waiting) >= self.max_queue:
                self.stats.refused += 1
                raise ServerBusy(f"server busy: {len(self._waiting)} requests are waiting (limit {self.max_queue})")
            self._waiting.append(job)
            self.stats.jobs += 1
            self._cond.notify()
        return job

    def generate(self, prompts: list[Any], params: SamplingParams, **job_args: Any) -> Job:
        return self.submit(Job(prompts=list(prompts), params=params, **job_args))

    def run(self, fn: Callable[[Any], Any], **job_args: Any) -> Job:
        return self.submit(Job(call=fn, **job_args))

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._worker.join(timeout=10)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    # ------------------------------------------------------------------ worker
    def _take(self) -> list[Job] | None:
        """The next batch: the oldest live job and, for generation, every waiting job with the same params."""
        with self._cond:
            while True:
                while not self._waiting and not self._closed:
                    self._cond.wait()
                if self._closed and not self._waiting:
                    return None
                first = self._waiting.popleft()
                if first.cancelled.is_set():
                    self._drop(first)
                    continue
                break
            batch = [first]
            if first.call is None and self.combine:
                size = len(first.prompts) * first.params.n
                for job in list(self._waiting):
                    if job.call is None and job.params == first.params and not job.cancelled.is_set():
                        extra = len(job.prompts) * job.params.n
                        if size + extra > self.max_batch_sequences:
                            break
                        self._waiting.remove(job)
                        batch.append(job)
                        size += extra
            return batch

    def _drop(self, job: Job) -> None:
        self.stats.cancelled += 1
        job.finish(error=Cancelled("request cancelled"))

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            first = batch[0]
            if first.call is not None:
                try:
                    first.finish(first.call(self.backend))
                except BaseException as exc:  # noqa: BLE001 - handed to the waiting request
                    first.finish(error=exc)
                continue
            self._generate(batch)

    def _generate(self, batch: list[Job]) -> None:
        ready = []
        for job in batch:
            try:
                if job.prepare is not None:
                    job.prompts = list(job.prepare(self.backend))
                ready.append(job)
            except BaseException as exc:  # noqa: BLE001 - this request's own error (e.g. a prompt too long)
                job.finish(error=exc)
        if not (batch := ready):
            return
        self.stats.batches += 1
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        prompts, owner = [], []
        for job in batch:
            prompts.extend(job.prompts)
            owner.extend([job] * len(job.prompts))
        kwargs = {}
        if getattr(self.backend, "cancellable", False):
            kwargs["should_stop"] = lambda i: owner[i].cancelled.is_set()
        try:
            rows: list[list[Generation]] = self.backend.generate(prompts, batch[0].params, **kwargs)
        except BaseException as exc:  # noqa: BLE001
            for job in batch:
                job.finish(error=exc)
            return
        start = 0
        for job in batch:
            part = rows[start : start + len(job.prompts)]
            start += len(job.prompts)
            if job.cancelled.is_set():
                self._drop(job)
            else:
                job.finish(part)
