"""OpenAI-compatible endpoints (OpenAI, vLLM/SGLang servers, ``raftlab serve``) through the openai SDK.

Requests run concurrently on an asyncio loop with a bounded semaphore. The SDK retries 429/5xx/timeouts with
exponential backoff (``max_retries``). The API key comes only from the environment (``RAFTLAB_API_KEY`` or
``OPENAI_API_KEY``) and is never stored in run records (``describe()`` omits it).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, Literal

from raftlab.backends.base import ContinuationScore, Generation, SamplingParams


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
    ) -> None:
        self.model_name = model
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        self.api = api
        self.concurrency = max(1, concurrency)
        self.max_retries = max_retries
        self.timeout = timeout
        self.on_error = on_error
        self._api_key = api_key or os.environ.get("RAFTLAB_API_KEY") or os.environ.get("OPENAI_API_KEY")
        if not self._api_key:
            if self.base_url and ("127.0.0.1" in self.base_url or "localhost" in self.base_url):
                self._api_key = "local"  # local servers need no key
            else:
                raise ValueError("no API key: set OPENAI_API_KEY (or RAFTLAB_API_KEY) in the environment")

    def describe(self) -> dict[str, Any]:
        """Settings safe to record (never the key)."""
        return {"backend": self.name, "model": self.model_name, "base_url": self.base_url, "api": self.api}

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self.model_name!r}, base_url={self.base_url!r}, api={self.api!r})"

    def _client(self):
        from openai import AsyncOpenAI

        return AsyncOpenAI(api_key=self._api_key, base_url=self.base_url, max_retries=self.max_retries,
                           timeout=self.timeout)

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
        import openai

        kwargs: dict[str, Any] = {"model": self.model_name, "n": params.n, "temperature": params.temperature,
                                  "top_p": params.top_p, "max_tokens": params.max_new_tokens}
        if params.stop:
            kwargs["stop"] = list(params.stop)[:4]  # the OpenAI API accepts at most 4 stop strings
        if params.seed is not None:
            kwargs["seed"] = params.seed
        try:
            if self.api == "chat":
                resp = await client.chat.completions.create(messages=[{"role": "user", "content": prompt}], **kwargs)
                texts = [(c.message.content or "", c.finish_reason) for c in resp.choices]
            else:
                resp = await client.completions.create(prompt=prompt, **kwargs)
                texts = [(c.text or "", c.finish_reason) for c in resp.choices]
        except (openai.APIError, openai.APITimeoutError, openai.APIConnectionError) as exc:
            if self.on_error == "raise":
                raise BackendRequestError(f"{self.model_name}: request failed after {self.max_retries} retries: "
                                          f"{type(exc).__name__}: {exc}") from exc
            return [Generation(text="", num_tokens=0, finish_reason="error") for _ in range(params.n)]
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
                if lp is None or lp.token_logprobs is None:
                    raise BackendRequestError(f"{self.model_name}: the server returned no logprobs for echo scoring")
                keep = [i for i, (t, off) in enumerate(zip(lp.tokens, lp.text_offset)) if off + len(t) > len(p)]
                return ContinuationScore(token_logprobs=[float(lp.token_logprobs[i]) for i in keep],
                                         tokens=[lp.tokens[i] for i in keep])

            return list(await asyncio.gather(*(one(p, c) for p, c in zip(prompts, continuations))))
