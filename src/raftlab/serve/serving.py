"""The work behind ``raftlab serve``'s endpoints: a request becomes jobs for the scheduler's worker thread, and their
results become an OpenAI response (or an OpenAI error).

Everything that touches the model or its tokenizer (rendering a chat, counting prompt tokens, generating, scoring,
the tokenizer endpoints) runs as a scheduler job on the one worker thread; the handlers here only wait for the
jobs, cancelling them when the client disconnects.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

from raftlab.serve.logprobs import TokenLogprobs
from raftlab.serve.protocol import (
    ChatRequest,
    CompletionRequest,
    DetokenizeRequest,
    GenerationRequest,
    TokenizeRequest,
    chat_chunks,
    chat_logprobs,
    completion_chunks,
    error_response,
    sse,
    usage,
)
from raftlab.serve.scheduler import BatchScheduler, Cancelled, Job, ServerBusy


def context_length(backend: Any) -> int | None:
    """The model's context window (``max_position_embeddings``), when the backend exposes its model."""
    config = getattr(getattr(backend, "model", None), "config", None)
    value = getattr(config, "max_position_embeddings", None)
    return int(value) if isinstance(value, int) and value > 0 else None


class _Refusal(Exception):
    """Raised by work on the worker thread to answer the request with ``response`` (an error) instead."""

    def __init__(self, response: Any) -> None:
        super().__init__()
        self.response = response


def _client_closed() -> Any:
    """The answer to a request whose client went away: nginx's 499 "client closed request" (nobody reads it)."""
    from fastapi.responses import Response

    return Response(status_code=499)


class OpenAIServing:
    """The endpoints' handlers for ``backend``, served as ``model_name`` through ``scheduler``.

    ``request`` arguments are the framework's request objects; only their ``is_disconnected()`` is used. A handler
    returns a JSON-able dict or a response (an error, or a stream)."""

    def __init__(self, backend: Any, scheduler: BatchScheduler, model_name: str | None = None,
                 default_max_tokens: int = 256) -> None:
        self.backend, self.scheduler, self.default_max_tokens = backend, scheduler, default_max_tokens
        self.name = model_name or getattr(backend, "model_name", "local")
        self.window = context_length(backend)
        self.tokens = TokenLogprobs(backend) if hasattr(backend, "score_ids") else None

    # ------------------------------------------------------------------ models and tokenizer
    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": self.name, "object": "model", "owned_by": "raftlab"}]}

    async def tokenizer_info(self, request: Any) -> Any:
        def info(_backend: Any) -> dict[str, Any]:
            tok = self.tokens.tok
            return {"eos_token": tok.eos_token, "bos_token": tok.bos_token, "pad_token": tok.pad_token,
                    "chat_template": getattr(tok, "chat_template", None), "model_max_length": self._max_len(),
                    "tokenizer_class": type(tok).__name__}

        return await self._on_worker(request, info)

    async def tokenize(self, req: TokenizeRequest, request: Any) -> Any:
        def encode(_backend: Any) -> dict[str, Any]:
            ids = list(self.tokens.tok(req.prompt, add_special_tokens=req.add_special_tokens).input_ids)
            return {"tokens": ids, "count": len(ids), "max_model_len": self._max_len()}

        return await self._on_worker(request, encode)

    async def detokenize(self, req: DetokenizeRequest, request: Any) -> Any:
        return await self._on_worker(request, lambda _backend: {"prompt": self.tokens.tok.decode(req.tokens)})

    def _max_len(self) -> int:
        return min(int(self.tokens.tok.model_max_length or 0), 10**9)

    async def _on_worker(self, request: Any, fn: Callable[[Any], Any]) -> Any:
        """Answer ``fn(backend)``, run on the worker thread (the one thread that uses the tokenizer)."""
        if self.tokens is None:
            return error_response(404, "this backend has no tokenizer", "not_found_error")
        result, bad = await self._served(request, lambda wake: self.scheduler.run(fn, on_done=wake))
        return bad if bad is not None else result

    # ------------------------------------------------------------------ completions
    async def completions(self, req: CompletionRequest, request: Any) -> Any:
        if (bad := self._check_model(req)) is not None:
            return bad
        prompts = req.prompts()
        needs_ids = req.echo or req.logprobs is not None or any(not isinstance(p, str) for p in prompts)
        if needs_ids and self.tokens is None:
            return error_response(400, "echo, logprobs and token-id prompts need a backend with a tokenizer")
        if req.echo and req.logprobs is None:
            return error_response(400, "echo needs logprobs (raftlab returns the prompt only with its log-probs)",
                                  "echo")
        budget = req.budget(self.default_max_tokens)
        counts: list[int] = []  # filled on the worker thread
        choices: list[dict[str, Any]] = []
        completion_tokens = 0
        if budget == 0:  # scoring only
            def score_all(_backend: Any) -> list[tuple[dict, str]]:
                counts.extend(self._counted(prompts, 0))
                return [self.tokens.completion(p, None, req.logprobs or 0, echo=True) for p in prompts]

            scored, bad = await self._served(request, lambda wake: self.scheduler.run(score_all, on_done=wake))
            if bad is not None:
                return bad
            for i, (body, text) in enumerate(scored):
                choices.append({"index": i, "text": text, "finish_reason": "length", "logprobs": body})
        else:
            def prepare(_backend: Any) -> list[str | list[int]]:
                counts.extend(self._counted(prompts, budget))
                return prompts

            gens, bad = await self._served(request, lambda wake: self.scheduler.generate(
                prompts, req.params(self.default_max_tokens), prepare=prepare, on_done=wake))
            if bad is not None:
                return bad
            pairs = [(i, g) for i, row in enumerate(gens) for g in row]
            if req.logprobs is not None:
                def score_pairs(_backend: Any) -> list[tuple[dict, str]]:
                    return [self.tokens.completion(prompts[i], g.text, req.logprobs, req.echo) for i, g in pairs]

                scored, bad = await self._served(request, lambda wake: self.scheduler.run(score_pairs, on_done=wake))
                if bad is not None:
                    return bad
            else:
                scored = [(None, g.text) for _, g in pairs]
            for (i, g), (body, text) in zip(pairs, scored):
                completion_tokens += g.num_tokens
                choices.append({"index": len(choices), "text": text, "finish_reason": g.finish_reason,
                                "logprobs": body, "prompt_index": i})
        response = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                    "model": self.name, "choices": choices, "usage": usage(sum(counts), completion_tokens)}
        if not req.stream:
            return response
        return sse(completion_chunks(response, req.stream_options))

    # ------------------------------------------------------------------ chat completions
    async def chat(self, req: ChatRequest, request: Any) -> Any:
        if (bad := self._check_model(req)) is not None:
            return bad
        messages = [{"role": m.role, "content": m.text()} for m in req.messages]
        render = getattr(self.backend, "render_chat", None)
        if req.logprobs and self.tokens is None:
            return error_response(400, "logprobs need a backend with a tokenizer", "logprobs")
        rendered: dict[str, Any] = {}  # filled on the worker thread: the template may tokenize

        def prepare(_backend: Any) -> list[str]:
            prompt = render(messages) if render else "\n\n".join(m["content"] for m in messages)
            [rendered["count"]] = self._counted([prompt], req.budget(self.default_max_tokens))
            rendered["prompt"] = prompt
            return [prompt]

        gens, bad = await self._served(request, lambda wake: self.scheduler.generate(
            [messages], req.params(self.default_max_tokens), prepare=prepare, on_done=wake))
        if bad is not None:
            return bad
        [row] = gens
        if req.logprobs:
            def score_all(_backend: Any) -> list[dict]:
                return [self.tokens.completion(rendered["prompt"], g.text, req.top_logprobs or 0, echo=False)[0]
                        for g in row]

            scored, bad = await self._served(request, lambda wake: self.scheduler.run(score_all, on_done=wake))
            if bad is not None:
                return bad
        else:
            scored = [None] * len(row)
        choices = [{"index": i, "message": {"role": "assistant", "content": g.text},
                    "finish_reason": g.finish_reason, "logprobs": chat_logprobs(sc) if sc else None}
                   for i, (g, sc) in enumerate(zip(row, scored))]
        response = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                    "model": self.name, "choices": choices,
                    "usage": usage(rendered["count"], sum(g.num_tokens for g in row))}
        if not req.stream:
            return response
        return sse(chat_chunks(response, req.stream_options))

    # ------------------------------------------------------------------ shared steps
    def _check_model(self, req: GenerationRequest) -> Any:
        if req.model is not None and req.model != self.name:
            return error_response(404, f"The model `{req.model}` does not exist; this server serves `{self.name}`",
                                  "not_found_error", "model")
        return None

    def _counted(self, prompts: list[str | list[int]], budget: int) -> list[int]:
        """Each prompt's token count (on the worker thread: it tokenizes); a 400 :class:`_Refusal` when a prompt
        plus the generation budget does not fit the model's context (as vLLM answers)."""
        counts = [self._count(p) for p in prompts]
        for n in counts:
            if self.window is not None and n + budget > self.window:
                raise _Refusal(error_response(
                    400, f"this model's maximum context length is {self.window} tokens; the prompt has {n} and "
                         f"max_tokens asks for {budget} more", param="max_tokens"))
        return counts

    def _count(self, prompt: str | list[int]) -> int:
        if not isinstance(prompt, str):
            return len(prompt)
        if hasattr(self.backend, "encode_prompt"):
            return len(self.backend.encode_prompt(prompt))
        return len(prompt.split())

    async def _served(self, request: Any, make_job: Callable[[Callable[[Job], None]], Job]) -> tuple[Any, Any]:
        """Submit a job to the scheduler (``make_job(on_done)``) and wait for it, cancelling it if the client
        disconnects: ``(result, None)``, or ``(None, error response)``."""
        loop = asyncio.get_running_loop()
        finished = loop.create_future()

        def wake(_job: Job) -> None:
            loop.call_soon_threadsafe(lambda: finished.done() or finished.set_result(None))

        try:
            job = make_job(wake)
        except ServerBusy as exc:
            return None, error_response(503, str(exc), "server_busy")
        while not finished.done():
            await asyncio.wait({finished}, timeout=0.1)
            if not finished.done() and await request.is_disconnected():
                job.cancel()
                return None, _client_closed()
        try:
            return job.wait(0), None
        except Cancelled:
            return None, _client_closed()
        except _Refusal as refusal:
            return None, refusal.response
