"""A pilot of the teacher: a few real requests, measured, stored nowhere.

Before a study spends thousands of requests, ``raftlab study CONFIG --plan --pilot N`` sends N of them (one
attempt each, the study's prompts and sampling, the gold filter applied) and replaces the estimate's assumed kept
rate and rationale length with what the teacher actually did.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from raftlab.backends.base import Backend
from raftlab.rationales.generate import base_params, check_attempt, request_with_retries
from raftlab.schema import Example
from raftlab.tasks.answers import answer_stop_pattern


@dataclass(frozen=True)
class PilotResult:
    """What N pilot requests measured: answered requests, the share kept by the gold filter, mean output tokens
    (each up to the first answer sentence), failed requests and the wall time."""

    requests: int
    answered: int
    kept_rate: float | None
    output_tokens: float | None
    failed: int
    seconds: float
    reasons: dict[str, int]

    def sentence(self, teacher: str) -> str:
        if not self.answered:
            return f"pilot: {self.requests} requests to {teacher}, none answered"
        return (f"pilot: {self.requests} requests to {teacher} in {self.seconds:.0f} s: {self.kept_rate:.0%} kept by "
                f"the gold filter, {self.output_tokens:.0f} output tokens on average"
                + (f", {self.failed} failed" if self.failed else ""))


def run_pilot(backend: Backend, tasks: Sequence[tuple[Any, Sequence[Example]]], *, style: str, length: int,
              temperature: float, max_new_tokens: int, seed: int, batch_size: int = 8) -> PilotResult:
    """One attempt for each given example (``tasks``: ``(task, examples)`` pairs), batched ``batch_size`` prompts
    per request call, as the study's first attempt would be sent."""
    backend = backend.as_teacher() if hasattr(backend, "as_teacher") else backend
    started = time.perf_counter()
    requests = answered = kept = tokens = failed = 0
    reasons: dict[str, int] = {}
    for task, examples in tasks:
        params = base_params(None, temperature, max_new_tokens, seed * 1000 + 1, answer_stop_pattern(task.answer_type))
        for i in range(0, len(examples), batch_size):
            batch = list(examples[i:i + batch_size])
            prompts = [task.teacher_prompt(e, style, length) for e in batch]
            gens, errors, _ = request_with_retries(backend, prompts, params, retries=1, backoff=1.0)
            requests += len(batch)
            for ex, prompt, row, error in zip(batch, prompts, gens, errors):
                if error is not None or not row:
                    failed += 1
                    continue
                gen = row[0]
                _, _, ok, reason, _ = check_attempt(task, ex, prompt, gen, params.stop_regex)
                answered += 1
                kept += ok
                tokens += gen.num_tokens or len(gen.text.split())
                if not ok:
                    reasons[reason or "wrong answer"] = reasons.get(reason or "wrong answer", 0) + 1
    return PilotResult(requests, answered, kept / answered if answered else None,
                       tokens / answered if answered else None, failed, time.perf_counter() - started, reasons)
