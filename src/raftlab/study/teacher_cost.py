"""The teacher's and the judge's share of a study's estimate: requests, samples, tokens and price.

Pure arithmetic for :mod:`raftlab.study.estimate`, mirroring how :func:`raftlab.rationales.generate_rationales`
spends requests: an example's attempts go out ``samples_per_prompt`` at a time (n samples of one request, each
sample billed as output) until one is kept or ``max_retries`` are used; the data is traversed again (copies with
fresh seeds) until ``kept_target`` rationales are kept or ``traversals`` are done. Each attempt is assumed kept with
probability ``kept_rate``, independently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def kept_share(kept_rate: float, max_retries: int) -> float:
    """Expected share of examples that end with a kept rationale."""
    return 1 - (1 - kept_rate) ** max_retries


def request_rounds(kept_rate: float, max_retries: int, samples_per_prompt: int = 1) -> tuple[float, float]:
    """Expected ``(requests, samples)`` per example visit when attempts go out ``samples_per_prompt`` at a time:
    a request's samples are all drawn (and billed) even after one of them is kept."""
    if not 0 < kept_rate <= 1:
        raise ValueError(f"kept rate must be in (0, 1], got {kept_rate}")
    requests = samples = 0.0
    reach, made = 1.0, 0
    while made < max_retries:
        draw = min(samples_per_prompt, max_retries - made)
        requests += reach
        samples += reach * draw
        reach *= (1 - kept_rate) ** draw
        made += draw
    return requests, samples


def expected_attempts(kept_rate: float, max_retries: int) -> float:
    """Expected attempts per example, one per request: they stop at the first kept rationale or after
    ``max_retries``."""
    return request_rounds(kept_rate, max_retries)[0]


@dataclass(frozen=True)
class TeacherPlan:
    """One task's expected teacher work: example visits (over all traversals), requests, samples drawn, and the
    kept rationales that become every arm's training rows."""

    task: str
    visits: float
    requests: float
    samples: float
    kept: float


def teacher_plan(task: str, train_examples: int, *, kept_rate: float, max_retries: int, samples_per_prompt: int = 1,
                 kept_target: int | None = None, traversals: int = 1) -> TeacherPlan:
    """The expected teacher work of one task (module docstring): visits stop at ``kept_target`` (default: one per
    training example, i.e. a single traversal) or after ``traversals`` times the training examples."""
    share = kept_share(kept_rate, max_retries)
    target = kept_target or train_examples
    visits = min(target / share, float(train_examples * traversals))
    requests, samples = request_rounds(kept_rate, max_retries, samples_per_prompt)
    return TeacherPlan(task, visits, visits * requests, visits * samples, min(float(target), visits * share))


def teacher_estimate(plans: Sequence[TeacherPlan], prompt_tokens: dict[str, float], *, rationale_tokens: int,
                     price_in: float | None, price_out: float | None) -> dict[str, Any]:
    """Requests, tokens (``{"input", "output", "total"}``) and cost in USD (None without a price) of the teacher
    over all tasks: a request's prompt is billed once, each of its samples as output. Prices are USD per million
    tokens."""
    requests = sum(p.requests for p in plans)
    tokens_in = sum(p.requests * prompt_tokens[p.task] for p in plans)
    tokens_out = sum(p.samples for p in plans) * rationale_tokens
    return {"requests": round(requests), "tokens": _tokens(tokens_in, tokens_out),
            "cost_usd": price(tokens_in, tokens_out, price_in, price_out)}


def judge_estimate(judged: dict[str, float], prompt_tokens: dict[str, float], *, judge_prompt_tokens: float,
                   rationale_tokens: int, output_tokens: int, price_in: float | None,
                   price_out: float | None) -> dict[str, Any]:
    """Requests, tokens and cost of the App. C judge: one request per judged rationale (``judged``: task ->
    count), its prompt the judge's instructions, the question and the rationale; at most ``output_tokens`` out."""
    requests = sum(judged.values())
    tokens_in = sum(n * (judge_prompt_tokens + prompt_tokens[t] + rationale_tokens) for t, n in judged.items())
    tokens_out = requests * output_tokens
    return {"requests": round(requests), "tokens": _tokens(tokens_in, tokens_out),
            "cost_usd": price(tokens_in, tokens_out, price_in, price_out)}


def price(tokens_in: float, tokens_out: float, price_in: float | None, price_out: float | None) -> float | None:
    """USD for the tokens at the prices per million (None when no price is given)."""
    if not (price_in or price_out):
        return None
    return round((tokens_in * (price_in or 0) + tokens_out * (price_out or 0)) / 1e6, 2)


def _tokens(tokens_in: float, tokens_out: float) -> dict[str, int]:
    return {"input": round(tokens_in), "output": round(tokens_out), "total": round(tokens_in + tokens_out)}
