"""Information gain along a rationale: how the probability of the final answer grows with each prefix.

Two procedures:

* :func:`sampled_answer_probabilities`: the paper's (Appendix A.1). After each *token* prefix of the rationale,
  100 answers are sampled, and the probability is the share that is the gold answer.
* :func:`answer_logprobs_by_prefix` / :func:`example_information_gain`: raftlab's cheaper variant (labelled
  "scored"). After each *sentence* prefix, the probability is the teacher-forced P(" The answer is X.") from
  ``Backend.score``: one forward pass per prefix instead of 100 samples.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")


@dataclass
class InfoGainCurve:
    """For prefixes of 0, 1, ..., S rationale sentences: log P(answer | prefix) and per-step gains."""

    logprob: np.ndarray  # (S+1,) natural log
    prob: np.ndarray  # (S+1,)
    gain: np.ndarray  # (S,) change of log-probability per added sentence, in ``unit``
    unit: str = "bits"

    @property
    def total_gain(self) -> float:
        return float(self.gain.sum())

    def to_dict(self) -> dict[str, Any]:
        return {"logprob": self.logprob.tolist(), "prob": self.prob.tolist(), "gain": self.gain.tolist(),
                "unit": self.unit, "total_gain": self.total_gain}


def answer_probability_curve(prefix_logprobs: Sequence[float]) -> np.ndarray:
    """P(final answer) after each prefix: ``exp`` of the given natural-log probabilities."""
    lp = np.asarray(prefix_logprobs, dtype=float)
    if lp.ndim != 1 or lp.size == 0:
        raise ValueError(f"prefix_logprobs: expected a non-empty 1-D sequence, got shape {lp.shape}")
    if np.isnan(lp).any() or (lp > 1e-9).any():
        raise ValueError("prefix_logprobs must be log-probabilities (<= 0, not NaN)")
    return np.exp(np.minimum(lp, 0.0))


def information_gain(prefix_logprobs: Sequence[float], unit: Literal["bits", "nats"] = "bits") -> np.ndarray:
    """Per-step information gain ``log P(a | prefix_{i+1}) − log P(a | prefix_i)`` (bits or nats)."""
    answer_probability_curve(prefix_logprobs)  # validates
    lp = np.asarray(prefix_logprobs, dtype=float)
    if unit not in ("bits", "nats"):
        raise ValueError(f"unit must be 'bits' or 'nats', got {unit!r}")
    gain = np.diff(lp)
    return gain / math.log(2) if unit == "bits" else gain


def information_gain_curve(prefix_logprobs: Sequence[float], unit: Literal["bits", "nats"] = "bits"
                           ) -> InfoGainCurve:
    """Probability curve and per-step gains from log P(answer) after each prefix (prefix 0 = no rationale)."""
    prob = answer_probability_curve(prefix_logprobs)
    return InfoGainCurve(np.asarray(prefix_logprobs, dtype=float), prob, information_gain(prefix_logprobs, unit),
                         unit)


def average_curves(curves: Sequence[Sequence[float]]) -> np.ndarray:
    """Mean over rationales of curves of different lengths, step by step (a step averages those that reach it)."""
    if not curves:
        raise ValueError("average_curves: no curves")
    width = max(len(c) for c in curves)
    table = np.full((len(curves), width), np.nan)
    for i, c in enumerate(curves):
        table[i, :len(c)] = c
    return np.nanmean(table, axis=0)


def split_sentences(rationale: str) -> list[str]:
    """Sentences of a rationale (split after ``.``, ``!`` or ``?`` followed by whitespace), answer sentence removed."""
    from raftlab.tasks.answers import strip_answer_sentence

    body = strip_answer_sentence(rationale or "")
    return [s.strip() for s in _SENTENCE_END.split(body) if s.strip()]


def rationale_prefixes(rationale: str) -> list[str]:
    """``["", s1, "s1 s2", ..., full rationale]`` (sentences joined by single spaces)."""
    sents = split_sentences(rationale)
    return [" ".join(sents[:i]) for i in range(len(sents) + 1)]


def answer_logprobs_by_prefix(backend: Any, prompt: str, rationale: str, answer: str) -> list[float]:
    """log P(" The answer is X." | prompt + rationale prefix) for prefixes of 0..S sentences, via ``Backend.score``.

    ``prompt`` is the evaluation prompt (e.g. ``task.prompt(example, "cot")``), ``answer`` the
    canonical answer. All prefixes are scored in one ``score`` call.
    """
    from raftlab.tasks.answers import answer_sentence

    prefixes = rationale_prefixes(rationale)
    prompts = [prompt + (" " + p if p else "") for p in prefixes]
    continuation = " " + answer_sentence(answer)
    scores = backend.score(prompts, [continuation] * len(prompts))
    if len(scores) != len(prompts):
        raise RuntimeError(f"backend {getattr(backend, 'name', backend)!r} returned {len(scores)} scores "
                           f"for {len(prompts)} prompts")
    return [s.total for s in scores]


def example_information_gain(backend: Any, task: Any, example: Any, rationale: str | None = None,
                             unit: Literal["bits", "nats"] = "bits") -> InfoGainCurve:
    """raftlab's "scored" variant (not the paper's procedure, see the module docstring): the information-gain
    curve of ``rationale`` (default: the example's own) for the gold answer of ``example``."""
    text = rationale if rationale is not None else example.rationale
    if not text:
        raise ValueError(f"example {example.id}: no rationale to analyse")
    lps = answer_logprobs_by_prefix(backend, task.prompt(example, "cot"), text, task.canonical_label(example))
    return information_gain_curve(lps, unit)


def token_prefix_prompts(prompt: str, rationale: str, tokenizer: Any, stride: int = 1) -> list[str]:
    """``prompt`` followed by the first 0, s, 2s, ..., T tokens of the rationale (answer sentence removed), as
    text: the inputs ``(x; r_{i<t})`` of the paper's Appendix A.1."""
    from raftlab.tasks.answers import strip_answer_sentence

    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    ids = tokenizer(" " + strip_answer_sentence(rationale or ""), add_special_tokens=False).input_ids
    cuts = list(range(0, len(ids) + 1, stride))
    if cuts[-1] != len(ids):
        cuts.append(len(ids))
    return [prompt + tokenizer.decode(ids[:c]) for c in cuts]


def sampled_answer_probabilities(backend: Any, task: Any, example: Any, rationale: str | None = None, *,
                                 n: int = 100, stride: int = 1, temperature: float = 0.8,
                                 max_new_tokens: int | None = None, seed: int = 0, tokenizer: Any = None
                                 ) -> np.ndarray:
    """The paper's information-gain procedure (Appendix A.1): after each token prefix ``r_{i<t}`` of the rationale,
    sample ``n`` continuations (default 100) and record the share whose answer is the gold answer ``y``.

    ``stride`` > 1 samples every ``stride`` tokens (cheaper; the paper uses 1). The tokenizer is the backend's
    (``backend.tokenizer``) unless given. Returns the probabilities for prefixes of 0, s, 2s, ..., T tokens.
    """
    from raftlab.backends.base import SamplingParams

    text = rationale if rationale is not None else example.rationale
    if not text:
        raise ValueError(f"example {example.id}: no rationale to analyse")
    tok = tokenizer if tokenizer is not None else getattr(backend, "tokenizer", None)
    if tok is None:
        raise ValueError("sampled information gain needs the model's tokenizer (pass tokenizer=...)")
    prompts = token_prefix_prompts(task.prompt(example, "cot"), text, tok, stride)
    budget = max_new_tokens or len(tok(" " + text, add_special_tokens=False).input_ids) + 16
    rows = backend.generate(prompts, SamplingParams(n=n, temperature=temperature, max_new_tokens=budget, seed=seed))
    return np.array([sum(task.is_correct(task.extract(g.text, example), example) for g in row) / max(1, len(row))
                     for row in rows])
