"""A deterministic fake teacher: example i answers correctly from its j-th attempt on."""

from __future__ import annotations

import threading
import time

from raftlab.backends.base import Generation, SamplingParams


class AttemptTeacher:
    name = "attempt-teacher"
    model_name = "attempt-teacher"

    def __init__(self, examples, success_attempt, delay: float = 0.0, thread_safe: bool = False,
                 started_file: str | None = None):
        self.started_file = started_file  # created when a request is in flight (tests wait for it)
        self.thread_safe = thread_safe  # True: the pipeline sends one request per example from a thread pool
        self.examples = list(examples)
        self.success_attempt = success_attempt  # example id -> first correct attempt (or a large number)
        self.delay = delay
        self.calls = 0
        self.max_prompts = 0
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()

    def _example(self, prompt):
        return max((e for e in self.examples if e.question in prompt), key=lambda e: len(e.question))

    def generate(self, prompts, params: SamplingParams):
        with self.lock:
            self.calls += 1
            self.max_prompts = max(self.max_prompts, len(prompts))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if self.started_file:
            open(self.started_file, "a").close()
        time.sleep(self.delay)  # the teacher's latency
        with self.lock:
            self.in_flight -= 1
        attempt = params.seed % 1000
        out = []
        for p in prompts:
            ex = self._example(p)
            if attempt >= self.success_attempt[ex.id]:
                text = f"First I think. Then I compute. The answer is {ex.label}."
            else:
                text = f"Wrong path. The answer is {int(ex.label) + 1000}."
            out.append([Generation(text=text, num_tokens=len(text.split()))])
        return out


def success_schedule(examples, max_retries):
    """Example i succeeds at attempt (i % (max_retries + 2)) + 1, so some never succeed."""
    return {e.id: (i % (max_retries + 2)) + 1 for i, e in enumerate(examples)}
