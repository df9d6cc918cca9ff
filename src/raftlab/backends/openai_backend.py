"""OpenAI-compatible endpoints (OpenAI, vLLM/SGLang servers, ``raftlab serve``) through the openai SDK.

Requests run concurrently on an asyncio loop with a bounded semaphore. The SDK retries 429/5xx/timeouts with
exponential backoff (``max_retries``). The API key comes only from the environment (``RAFTLAB_API_KEY`` or
``OPENAI_API_KEY``) and is never stored in run records (``describe()`` omits it).

Chat requests carry a system message when ``system_prompt`` is set. Left unset, a rationale teacher
(:meth:`OpenAIBackend.as_teacher`) sends the paper's, :data:`TEACHER_SYSTEM_PROMPT`; ``""`` sends none.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import threading
from collections.abc import Coroutine
from typing import Any, Literal

from raftlab.backends.base import TEACHER_SYSTEM_PROMPT, ContinuationScore, Generation, SamplingParams


class BackendRequestError(RuntimeError):
    """A request failed after all retries."""


def _run(coro: Coroutine) -> Any:
    """Run a coroutine to completion, also when called from inside a running event loop (notebooks)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


logger = logging.getLogger(__name__)


#: HTTP statuses the openai client retries (with backoff, up to max_retries)
_RETRYABLE = frozenset({408, 409, 429}) | frozenset(range(500, 600))


class _RefusedN(Exception):
    """The server refused a request because of its ``n``."""

    def __init__(self, server_message: str) -> None:
        super().__init__(server_message)
        self.server_message = server_message


def _server_message(exc: Any) -> str:
    """What the server said in an error response (OpenAI ``{"error": {"message"}}``, llama.cpp's and vLLM's too)."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
    return str(getattr(exc, "message", None) or exc)


class OpenAIBackend:
    """Generate with chat or completions requests; score with ``echo`` + ``logprobs`` completions."""

    name = "openai"
    thread_safe = True

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api: Literal["chat", "completions"] = "chat",
        concurrency: int = 8,
        max_retries: int = 6,
        timeout: float = 120.0,
        on_error: Literal["raise", "empty"] = "raise",
        api_key: str | None = None,
        system_prompt: str | None = None,
        **client_options: Any,
    ) -> None:
        if system_prompt and api != "chat":
            raise ValueError(f"system_prompt needs api='chat' (a system message), not api={api!r}")
        self.model_name = model
        #: the chat requests' system message: None = unset (a teacher sends TEACHER_SYSTEM_PROMPT), "" = none
        self.system_prompt = system_prompt
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        self.api = api
        self.concurrency = max(1, concurrency)
        self.max_retries = max_retries
        self.timeout = timeout
        self.on_error = on_error
        self.client_options = client_options  # further AsyncOpenAI arguments (default_headers, organization, ...)
        self._n_cap: int | None = None  # most samples the server gives in one request, once it has shown a limit
        self._api_key = api_key or os.environ.get("RAFTLAB_API_KEY") or os.environ.get("OPENAI_API_KEY")
        if not self._api_key:
            if self.base_url and ("127.0.0.1" in self.base_url or "localhost" in self.base_url):
                self._api_key = "local"  # local servers need no key
            else:
                raise ValueError("no API key: set OPENAI_API_KEY (or RAFTLAB_API_KEY) in the environment")

    def describe(self) -> dict[str, Any]:
        """Settings safe to record (never the key); ``system_prompt`` only when one is sent."""
        out = {"backend": self.name, "model": self.model_name, "base_url": self.base_url, "api": self.api}
        if self.api == "chat" and self.system_prompt:
            out["system_prompt"] = self.system_prompt
        return out

    def as_teacher(self) -> OpenAIBackend:
        """This backend as a rationale teacher: with ``system_prompt`` unset, a copy whose chat requests carry
        the paper's system message (:data:`TEACHER_SYSTEM_PROMPT`)."""
        if self.api != "chat" or self.system_prompt is not None:
            return self
        teacher = copy.copy(self)
        teacher.system_prompt = TEACHER_SYSTEM_PROMPT
        return teacher

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self.model_name!r}, base_url={self.base_url!r}, api={self.api!r})"

    def _client(self):
        from openai import AsyncOpenAI

        return AsyncOpenAI(api_key=self._api_key, base_url=self.base_url, max_retries=self.max_retries,
                           timeout=self.timeout, **self.client_options)

    # ---------------------------------------------------------------- generate
    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Generation]]:
        return _run(self._generate_all(prompts, params))

    async def _generate_all(self, prompts: list[str], params: SamplingParams) -> list[list[Generation]]:
        sem = asyncio.Semaphore(self.concurrency)
        async with self._client() as client:
            async def one(p: str) -> list[Generation]:
                async with sem:
                    return await self._generate_one(client, p, params)

            return list(await asyncio.gather(*(one(p) for p in prompts)))

    async def _generate_one(self, client: Any, prompt: str, params: SamplingParams) -> list[Generation]:
        """``params.n`` samples of one prompt. A server that refuses ``n`` > 1 (llama.cpp's server with fewer
        slots than n answers 400) or returns fewer choices than asked gets the rest as further requests, each
        with its own seed (``seed + i`` for the i-th sample), and that is logged once per backend."""
        gens: list[Generation] = []
        while len(gens) < params.n:
            want = params.n - len(gens) if self._n_cap is None else min(self._n_cap, params.n - len(gens))
            seed = None if params.seed is None else params.seed + len(gens)
            try:
                got = await self._request(client, prompt, params, want, seed)
            except _RefusedN as exc:
                self._n_cap = 1
                logger.warning("%s: the server refused n=%d (%s); sending one request per sample, each with its own "
                               "seed", self.model_name, want, exc.server_message)
                continue
            if not got:
                break
            if len(got) < want and self._n_cap is None:
                self._n_cap = len(got)
                logger.warning("%s: the server returned %d of the %d samples asked for in one request; asking for "
                               "the rest in further requests with their own seeds", self.model_name, len(got), want)
            gens += got
        return gens[: params.n]

    async def _request(self, client: Any, prompt: str, params: SamplingParams, n: int, seed: int | None
                       ) -> list[Generation]:
        import openai

        kwargs: dict[str, Any] = {"model": self.model_name, "temperature": params.temperature,
                                  "top_p": params.top_p, "max_tokens": params.max_new_tokens}
        if n > 1:
            kwargs["n"] = n
        if params.stop:
            kwargs["stop"] = list(params.stop)[:4]  # the OpenAI API accepts at most 4 stop strings
        if seed is not None:
            kwargs["seed"] = seed
        try:
            if self.api == "chat":
                system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
                resp = await client.chat.completions.create(messages=[*system, {"role": "user", "content": prompt}],
                                                            **kwargs)
                texts = [(c.message.content or "", c.finish_reason) for c in resp.choices]
            else:
                resp = await client.completions.create(prompt=prompt, **kwargs)
                texts = [(c.text or "", c.finish_reason) for c in resp.choices]
        except openai.APIStatusError as exc:
            said = _server_message(exc)
            if n > 1 and exc.status_code in (400, 422):
                raise _RefusedN(said) from exc
            if exc.status_code in _RETRYABLE:
                return self._failed(n, f"request failed after {self.max_retries} retries: HTTP {exc.status_code}: "
                                       f"{said}", exc)
            return self._failed(n, f"the server refused the request (HTTP {exc.status_code}, not retried): {said}",
                                exc)
        except (openai.APITimeoutError, openai.APIConnectionError) as exc:
            return self._failed(n, f"request failed after {self.max_retries} retries: {type(exc).__name__}: {exc}",
                                exc)
        usage = getattr(resp, "usage", None)
        per = (usage.completion_tokens // max(1, len(texts))) if usage and usage.completion_tokens else 0
        gens = []
        for text, reason in texts:
            for s in params.stop:  # some servers keep the stop string; trim it like the hf backend
                cut = text.find(s) if s else -1
                if cut >= 0:
                    text = text[:cut]
            gens.append(Generation(text=text, num_tokens=per, finish_reason=reason or "stop"))
        return gens

    def _failed(self, n: int, message: str, exc: Exception) -> list[Generation]:
        if self.on_error == "raise":
            raise BackendRequestError(f"{self.model_name}: {message}") from exc
        return [Generation(text="", num_tokens=0, finish_reason="error") for _ in range(n)]

    # ------------------------------------------------------------------- score
    def score(self, prompts: list[str], continuations: list[str]) -> list[ContinuationScore]:
        if len(prompts) != len(continuations):
            raise ValueError(f"score() needs as many prompts ({len(prompts)}) as continuations ({len(continuations)})")
        return _run(self._score_all(prompts, continuations))

    async def _score_all(self, prompts: list[str], continuations: list[str]) -> list[ContinuationScore]:
        sem = asyncio.Semaphore(self.concurrency)
        async with self._client() as client:
            async def one(p: str, c: str) -> ContinuationScore:
                async with sem:
                    resp = await client.completions.create(model=self.model_name, prompt=p + c, echo=True,
                                                           logprobs=1, max_tokens=0, temperature=0.0)
                lp = resp.choices[0].logprobs
                echoed = (lp is not None and lp.token_logprobs is not None and lp.tokens and lp.text_offset
                          and min(lp.text_offset) == 0 and sum(len(t) for t in lp.tokens) >= len(p + c))
                if not echoed:
                    raise BackendRequestError(
                        f"{self.model_name} at {self.base_url}: this server does not echo the prompt's log-probs "
                        "(completions with echo=true, logprobs, max_tokens=0), which scoring needs (mode "
                        "direct_prob, information gain, RATIONALYST filtering). llama.cpp's llama-server ignores "
                        "echo; vLLM's OpenAI server and `raftlab serve` support it. Use sampled modes (sc, cot) "
                        "with this server, or score with one of those.")
                keep = [i for i, (t, off) in enumerate(zip(lp.tokens, lp.text_offset)) if off + len(t) > len(p)]
                return ContinuationScore(token_logprobs=[float(lp.token_logprobs[i]) for i in keep],
                                         tokens=[lp.tokens[i] for i in keep])

            return list(await asyncio.gather(*(one(p, c) for p, c in zip(prompts, continuations))))
