"""The small interface every model backend implements (hf, vllm, openai)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Protocol, runtime_checkable

from raftlab.backends.sampling_knobs import EVAL_DEFAULTS, check_knob

#: The system message of a chat teacher's requests: Zhu et al. (2025), Appendix D.1 (and the official code).
TEACHER_SYSTEM_PROMPT = "You are a helpful assistant."


@dataclass(frozen=True)
class SamplingParams:
    """Explicit sampling settings, as every backend receives them; recorded with every result.

    The engine-facing carrier of the sampling knobs (:mod:`raftlab.backends.sampling_knobs` holds their meaning,
    bounds and defaults) plus what only a backend call needs: ``n``, ``stop``, ``stop_regex``. Greedy
    (``temperature`` 0) unless asked, and ``max_new_tokens`` may be 0 (a server request that only scores its
    prompt); other values outside a knob's bounds are a ValueError."""

    n: int = 1
    temperature: float = 0.0
    top_p: float = EVAL_DEFAULTS.top_p
    top_k: int = EVAL_DEFAULTS.top_k  # 0 = disabled
    max_new_tokens: int = EVAL_DEFAULTS.max_new_tokens
    stop: tuple[str, ...] = ()
    seed: int | None = EVAL_DEFAULTS.seed
    #: stop once this regex matches the generated text, and cut the text at the end of the match (the eval's
    #: complete answer sentence, raftlab.tasks.answers.answer_stop_pattern); backends that cannot stop on a
    #: regex generate on and the caller cuts the text
    stop_regex: str | None = None

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, not {self.n!r}")
        for name in ("temperature", "top_p", "top_k"):
            check_knob(name, getattr(self, name))
        check_knob("max_new_tokens", self.max_new_tokens, ge=0)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stop"] = list(self.stop)
        if d["stop_regex"] is None:  # recorded only when set: settings recorded before it existed still match
            del d["stop_regex"]
        return d


@dataclass
class Generation:
    """One sampled continuation."""

    text: str
    num_tokens: int = 0
    finish_reason: str = "stop"  # "stop" | "length" | "error" | "abort" (cancelled, see hf.generate)


@dataclass
class ContinuationScore:
    """Log-probabilities of the tokens of a given continuation."""

    token_logprobs: list[float] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    #: optional, per token: the ``top_logprobs`` most likely tokens at that position -> their log-probs
    top_logprobs: list[dict[str, float]] | None = None

    @property
    def total(self) -> float:
        return float(sum(self.token_logprobs))

    @property
    def mean(self) -> float:
        return self.total / max(1, len(self.token_logprobs))


@runtime_checkable
class Backend(Protocol):
    """Generate samples and score continuations.

    Prompts are plain strings: the exact text the model continues. Backends
    that talk to chat models wrap them in a single user message.

    Batch sizes count prompts: a backend that batches locally (hf's ``batch_size``) decodes that many prompts per
    forward, each with all its ``params.n`` samples, and does the row arithmetic (prompts x samples, a KV-cache
    cap) itself; callers pass the number of prompts (questions) they send together, never ``batch_size * n``.
    """

    name: str
    #: ``generate`` may be called from several threads at once (remote requests); callers then keep several
    #: requests in flight instead of batching prompts themselves.
    thread_safe: bool

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Generation]]:
        """Return ``params.n`` generations for each prompt, in prompt order."""
        ...

    def score(self, prompts: list[str], continuations: list[str]) -> list[ContinuationScore]:
        """Log-probability of each continuation given its prompt (pairwise)."""
        ...
