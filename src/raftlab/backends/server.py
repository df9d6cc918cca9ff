"""``raftlab serve``: an OpenAI-compatible HTTP server over a local backend (hf by default), speaking the protocol
the way real clients (the openai client, lm-evaluation-harness, vLLM-style tokenizer endpoints) use it.

Endpoints:

* ``GET /v1/models``.
* ``POST /v1/completions``. ``prompt`` is a string, a list of strings, a list of token ids, or a list of token-id
  lists. Also ``n``, ``temperature``, ``top_p``, ``top_k``, ``max_tokens``/``max_completion_tokens``, ``stop``,
  ``seed``, ``logprobs``, ``stream``. ``echo`` with ``logprobs`` returns the prompt's token log-probs (the first
  is null), followed by the generated tokens' when ``max_tokens`` >= 1, as vLLM does.
* ``POST /v1/chat/completions``. ``content`` is a string or a list of text parts. Messages are rendered with the
  model's chat template when it has one. Also ``logprobs``, ``top_logprobs``, ``stream``.
* ``GET /tokenizer_info``, ``POST /tokenize``, ``POST /detokenize`` (vLLM's tokenizer endpoints; lm-eval uses them
  as its "remote" tokenizer).

Log-probs are scored on token ids: the prompt's ids as given (or as the model tokenizes the prompt text), then the
tokenization of the returned text. ``text_offset`` comes from the tokenizer's character offsets (or from cumulative
decoding for token-id prompts), never from per-token decoded lengths, so multi-byte characters do not shift
it. Streaming sends each choice's text as one chunk once generation finishes (not token by token), then
``[DONE]``. Fields that would change the result and that raftlab does not implement (penalties, ``logit_bias``,
``suffix``, ``best_of`` != n, non-text ``response_format``, unknown fields) are refused with 400, not ignored.
Errors use OpenAI's ``{"error": {...}}`` bodies.

Concurrency: one worker thread owns the model (:mod:`raftlab.backends.batching`). Requests that wait together
with the same sampling settings are decoded in one batch; a full queue answers 503; a client that disconnects has
its request cancelled (the hf backend stops at the next token). The tokenizer, too, is used only from that thread
(HF fast tokenizers are not thread-safe): prompts are rendered, counted and tokenized there, the tokenizer
endpoints included.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from typing import Any, Literal

from fastapi import Request  # module level: FastAPI resolves the endpoints' (string) annotations here
from pydantic import BaseModel, ConfigDict, Field, model_validator

from raftlab.backends.base import SamplingParams
from raftlab.backends.batching import BatchScheduler, Cancelled, Job, ServerBusy

MAX_N = 128
#: Largest request body accepted (bytes); larger ones get 413.
MAX_BODY_BYTES = 4 * 1024 * 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamOptions(_Strict):
    include_usage: bool = False


class _Common(_Strict):
    model: str | None = None
    n: int = Field(1, ge=1, le=MAX_N)
    temperature: float = Field(1.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=-1, description="vLLM extension; -1/0/None: disabled")
    max_tokens: int | None = Field(None, ge=0)
    max_completion_tokens: int | None = Field(None, ge=0)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None  # recorded by OpenAI for abuse monitoring; no effect on the result
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[str, float] | None = None

    @model_validator(mode="after")
    def _refuse_unimplemented(self) -> _Common:
        if self.presence_penalty or self.frequency_penalty:
            raise ValueError("presence_penalty and frequency_penalty are not supported (use 0)")
        if self.logit_bias:
            raise ValueError("logit_bias is not supported")
        return self

    def budget(self, default: int) -> int:
        """``max_completion_tokens`` (the newer name) or ``max_tokens``, else the server default."""
        for value in (self.max_completion_tokens, self.max_tokens):
            if value is not None:
                return value
        return default

    def params(self, default_max: int) -> SamplingParams:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return SamplingParams(n=self.n, temperature=self.temperature, top_p=self.top_p,
                              top_k=max(0, self.top_k or 0), max_new_tokens=self.budget(default_max),
                              stop=tuple(stop), seed=self.seed)


class CompletionRequest(_Common):
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=20)
    suffix: str | None = None
    best_of: int | None = None

    @model_validator(mode="after")
    def _prompt_and_options(self) -> CompletionRequest:
        if self.suffix:
            raise ValueError("suffix (insertion) is not supported")
        if self.best_of is not None and self.best_of != self.n:
            raise ValueError("best_of other than n is not supported")
        items = self.prompts()
        if not items or any(len(p) == 0 for p in items):
            raise ValueError("prompt must not be empty")
        return self

    def prompts(self) -> list[str | list[int]]:
        """Each prompt: a string or a list of token ids."""
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if p and all(isinstance(x, int) for x in p):
            return [list(p)]  # one token-id prompt
        return list(p)  # type: ignore[arg-type]


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    role: str
    content: str | list[TextPart]
    name: str | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ResponseFormat(_Strict):
    type: Literal["text"]


class ChatRequest(_Common):
    messages: list[ChatMessage] = Field(..., min_length=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    response_format: ResponseFormat | None = None


class TokenizeRequest(_Strict):
    prompt: str
    add_special_tokens: bool = True
    model: str | None = None


class DetokenizeRequest(_Strict):
    tokens: list[int]
    model: str | None = None


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def _error(status: int, message: str, kind: str = "invalid_request_error", param: str | None = None):
    from fastapi.responses import JSONResponse

    return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind, "param": param,
                                                               "code": None}})


class _Refusal(Exception):
    """Raised by work on the worker thread to answer the request with ``response`` (an error) instead."""

    def __init__(self, response: Any) -> None:
        super().__init__()
        self.response = response


async def _read_body(receive: Any, limit: int) -> Any:
    """Read the request body, counting bytes as they arrive (a chunked body has no Content-Length): a ``receive``
    that replays it to the app, or None once it passes ``limit`` bytes."""
    messages: deque[dict[str, Any]] = deque()
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        size += len(message.get("body", b""))
        if size > limit:
            return None
        if message["type"] != "http.request" or not message.get("more_body", False):
            break

    async def replay() -> dict[str, Any]:
        return messages.popleft() if messages else await receive()

    return replay


def _sse(chunks: Iterator[dict[str, Any]]):
    from fastapi.responses import StreamingResponse

    def events() -> Iterator[str]:
        for chunk in chunks:
            yield f"data: {json.dumps(chunk)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


class _Tokens:
    """Token-level views for logprobs: the ids a prompt (plus generated text) is scored on, the token texts and
    their exact character offsets."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.tok = backend.tokenizer

    def sequence(self, prompt: str | list[int], generated: str | None
                 ) -> tuple[list[int], list[str], list[int], int, str]:
        """``(ids, token texts, offsets, number of prompt tokens, full text)``.

        A text prompt is tokenized together with the generated text, as the model reads ``prompt + text`` (a token
        that merges across the boundary belongs to the continuation); offsets are the tokenizer's character
        offsets into that text. A token-id prompt is scored on its ids as given, followed by the tokenization of
        the generated text; its offsets come from cumulative decoding."""
        gen = generated or ""
        if isinstance(prompt, str):
            text = prompt + gen
            ids = self.backend.encode_prompt(text)
            ctx = self.backend.encode_prompt(prompt) if gen else ids
            n = 0
            while n < min(len(ctx), len(ids)) and ctx[n] == ids[n]:
                n += 1
            texts, offsets = self._spans(text, ids)
            return ids, texts, offsets, n, text
        p_text, p_texts, p_offsets = self._decoded(prompt)
        g_ids = self.tok(gen, add_special_tokens=False).input_ids if gen else []
        g_texts, g_offsets = self._spans(gen, g_ids) if gen else ([], [])
        return (list(prompt) + g_ids, p_texts + g_texts, p_offsets + [len(p_text) + o for o in g_offsets],
                len(prompt), p_text + gen)

    def _decoded(self, ids: list[int]) -> tuple[str, list[str], list[int]]:
        pieces, offsets, prev = [], [], ""
        for i in range(len(ids)):  # cumulative decoding: offsets never drift on byte fragments
            cur = self.tok.decode(ids[: i + 1])
            start = len(prev) if cur.startswith(prev) else len(cur)
            offsets.append(start)
            pieces.append(cur[start:])
            prev = cur
        return prev, pieces, offsets

    def _spans(self, text: str, ids: list[int]) -> tuple[list[str], list[int]]:
        for special in (False, True):
            try:
                enc = self.tok(text, add_special_tokens=special, return_offsets_mapping=True)
            except (NotImplementedError, ValueError, TypeError):  # slow tokenizers: no offsets
                break
            if list(enc.input_ids) == list(ids):
                starts = [s for s, _ in enc.offset_mapping]
                starts = [max(starts[: k + 1]) for k in range(len(starts))]  # specials report (0, 0)
                ends = starts[1:] + [len(text)]
                return [text[a:b] for a, b in zip(starts, ends)], starts
        _, pieces, offsets = self._decoded(ids)
        return pieces, offsets


def context_length(backend: Any) -> int | None:
    """The model's context window (``max_position_embeddings``), when the backend exposes its model."""
    config = getattr(getattr(backend, "model", None), "config", None)
    value = getattr(config, "max_position_embeddings", None)
    return int(value) if isinstance(value, int) and value > 0 else None


def create_app(backend: Any, model_name: str | None = None, default_max_tokens: int = 256,
               api_key: str | None = None, max_body_bytes: int = MAX_BODY_BYTES, max_queue: int = 64,
               batching: bool = True):
    """FastAPI app serving ``backend`` (anything implementing the Backend protocol; ``render_chat`` optional; the
    tokenizer endpoints, echo and logprobs need an hf backend's ``tokenizer``, ``encode_prompt`` and ``score_ids``).

    With ``api_key`` every request must carry ``Authorization: Bearer <api_key>`` (else 401). Bodies over
    ``max_body_bytes`` get 413 (counted as they arrive, so chunked bodies too); a prompt plus ``max_tokens`` beyond
    the model's context gets 400.

    Model work runs in one worker thread (:class:`~raftlab.backends.batching.BatchScheduler`): generation requests
    waiting together with the same sampling settings are decoded as one batch (``batching=False``: one request at
    a time); more than ``max_queue`` waiting requests get 503; a request whose client disconnects is cancelled
    (dropped from the queue, or stopped at the next token by a cancellable backend)."""
    import hmac

    from fastapi import FastAPI
    from fastapi.responses import Response
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    app = FastAPI(title="raftlab serve")
    window = context_length(backend)

    async def guard(scope, receive, send, inner):
        """API key and body-size checks, as pure ASGI middleware (BaseHTTPMiddleware would hide client disconnects
        from the endpoints)."""
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            refusal = None
            if api_key is not None and not hmac.compare_digest(headers.get("authorization", "").encode(),
                                                               f"Bearer {api_key}".encode()):
                refusal = _error(401, "missing or wrong API key (send 'Authorization: Bearer <key>')",
                                 "authentication_error")
            size = headers.get("content-length")
            if refusal is None and size is not None and size.isdigit() and int(size) > max_body_bytes:
                refusal = _error(413, f"request body of {size} bytes is over the limit of {max_body_bytes}")
            if refusal is not None:
                return await refusal(scope, receive, send)
            if (replay := await _read_body(receive, max_body_bytes)) is None:
                return await _error(413, f"request body is over the limit of {max_body_bytes} bytes"
                                    )(scope, receive, send)
            receive = replay
        return await inner(scope, receive, send)

    name = model_name or getattr(backend, "model_name", "local")
    scheduler = BatchScheduler(backend, max_queue=max_queue, combine=batching)
    app.state.scheduler = scheduler
    app.router.on_shutdown.append(scheduler.close)
    tokens = _Tokens(backend) if hasattr(backend, "score_ids") else None

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors())
        first = exc.errors()[0]["loc"][1:] if exc.errors() else ()
        return _error(400, problems, param=".".join(str(p) for p in first) or None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail), "not_found_error" if exc.status_code == 404 else
                      "invalid_request_error")

    def check_model(req: _Common):
        if req.model is not None and req.model != name:
            return _error(404, f"The model `{req.model}` does not exist; this server serves `{name}`",
                          "not_found_error", "model")
        return None

    def counted(prompts: list[str | list[int]], budget: int) -> list[int]:
        """Each prompt's token count (on the worker thread: it tokenizes); a 400 :class:`_Refusal` when a prompt
        plus the generation budget does not fit the model's context (as vLLM answers)."""
        counts = [count(p) for p in prompts]
        for n in counts:
            if window is not None and n + budget > window:
                raise _Refusal(_error(400, f"this model's maximum context length is {window} tokens; the prompt has "
                                           f"{n} and max_tokens asks for {budget} more", param="max_tokens"))
        return counts

    def count(prompt: str | list[int]) -> int:
        if not isinstance(prompt, str):
            return len(prompt)
        return len(backend.encode_prompt(prompt)) if hasattr(backend, "encode_prompt") else len(prompt.split())

    def logprobs_of(prompt: str | list[int], generated: str | None, top: int, echo: bool) -> tuple[dict, str]:
        """Completions ``logprobs`` (and the response text), scored on token ids (see :class:`_Tokens`)."""
        ids, texts, offsets, n_prompt, full = tokens.sequence(prompt, generated)
        [(lps, tops)] = backend.score_ids([ids], top)
        values = [None, *lps]
        top_rows = [None, *[{tokens.tok.decode([t]): v for t, v in row.items()} for row in tops]] if tops else None
        keep = slice(0, None) if echo else slice(n_prompt, None)
        body = {"tokens": texts[keep], "token_logprobs": values[keep], "text_offset": offsets[keep],
                "top_logprobs": top_rows[keep] if top_rows is not None else None}
        return body, full if echo else (generated or "")

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "raftlab"}]}

    async def on_worker(request: Request, fn):
        """Answer ``fn(backend)``, run on the worker thread (the one thread that uses the tokenizer)."""
        if tokens is None:
            return _error(404, "this backend has no tokenizer", "not_found_error")
        result, bad = await served(request, lambda wake: scheduler.run(fn, on_done=wake))
        return bad if bad is not None else result

    def max_len() -> int:
        return min(int(tokens.tok.model_max_length or 0), 10**9)

    @app.get("/tokenizer_info")
    async def tokenizer_info(request: Request):
        def info(_backend: Any) -> dict[str, Any]:
            tok = tokens.tok
            return {"eos_token": tok.eos_token, "bos_token": tok.bos_token, "pad_token": tok.pad_token,
                    "chat_template": getattr(tok, "chat_template", None), "model_max_length": max_len(),
                    "tokenizer_class": type(tok).__name__}

        return await on_worker(request, info)

    @app.post("/tokenize")
    async def tokenize(req: TokenizeRequest, request: Request):
        def encode(_backend: Any) -> dict[str, Any]:
            ids = list(tokens.tok(req.prompt, add_special_tokens=req.add_special_tokens).input_ids)
            return {"tokens": ids, "count": len(ids), "max_model_len": max_len()}

        return await on_worker(request, encode)

    @app.post("/detokenize")
    async def detokenize(req: DetokenizeRequest, request: Request):
        return await on_worker(request, lambda _backend: {"prompt": tokens.tok.decode(req.tokens)})

    async def served(request: Request, make_job):
        """Submit a job to the scheduler and wait for it, cancelling it if the client disconnects."""
        loop = asyncio.get_running_loop()
        finished = loop.create_future()

        def wake(_job: Job) -> None:
            loop.call_soon_threadsafe(lambda: finished.done() or finished.set_result(None))

        try:
            job = make_job(wake)
        except ServerBusy as exc:
            return None, _error(503, str(exc), "server_busy")
        while not finished.done():
            await asyncio.wait({finished}, timeout=0.1)
            if not finished.done() and await request.is_disconnected():
                job.cancel()
                return None, Response(status_code=499)  # nginx's "client closed request"; nobody reads it
        try:
            return job.wait(0), None
        except Cancelled:
            return None, Response(status_code=499)
        except _Refusal as refusal:
            return None, refusal.response

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest, request: Request):
        if (bad := check_model(req)) is not None:
            return bad
        prompts = req.prompts()
        needs_ids = req.echo or req.logprobs is not None or any(not isinstance(p, str) for p in prompts)
        if needs_ids and tokens is None:
            return _error(400, "echo, logprobs and token-id prompts need a backend with a tokenizer")
        if req.echo and req.logprobs is None:
            return _error(400, "echo needs logprobs (raftlab returns the prompt only with its log-probs)", "echo")
        budget = req.budget(default_max_tokens)
        counts: list[int] = []  # filled on the worker thread
        choices: list[dict[str, Any]] = []
        completion_tokens = 0
        if budget == 0:  # scoring only
            def score_all(_backend: Any) -> list[tuple[dict, str]]:
                counts.extend(counted(prompts, 0))
                return [logprobs_of(p, None, req.logprobs or 0, echo=True) for p in prompts]

            scored, bad = await served(request, lambda wake: scheduler.run(score_all, on_done=wake))
            if bad is not None:
                return bad
            for i, (body, text) in enumerate(scored):
                choices.append({"index": i, "text": text, "finish_reason": "length", "logprobs": body})
        else:
            def prepare(_backend: Any) -> list[str | list[int]]:
                counts.extend(counted(prompts, budget))
                return prompts

            gens, bad = await served(request, lambda wake: scheduler.generate(
                prompts, req.params(default_max_tokens), prepare=prepare, on_done=wake))
            if bad is not None:
                return bad
            pairs = [(i, g) for i, row in enumerate(gens) for g in row]
            if req.logprobs is not None:
                def score_all(_backend: Any) -> list[tuple[dict, str]]:
                    return [logprobs_of(prompts[i], g.text, req.logprobs, req.echo) for i, g in pairs]

                scored, bad = await served(request, lambda wake: scheduler.run(score_all, on_done=wake))
                if bad is not None:
                    return bad
            else:
                scored = [(None, g.text) for _, g in pairs]
            for (i, g), (body, text) in zip(pairs, scored):
                completion_tokens += g.num_tokens
                choices.append({"index": len(choices), "text": text, "finish_reason": g.finish_reason,
                                "logprobs": body, "prompt_index": i})
        response = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                    "model": name, "choices": choices,
                    "usage": _usage(sum(counts), completion_tokens)}
        if not req.stream:
            return response
        return _sse(_completion_chunks(response, req.stream_options))

    @app.post("/v1/chat/completions")
    async def chat(req: ChatRequest, request: Request):
        if (bad := check_model(req)) is not None:
            return bad
        messages = [{"role": m.role, "content": m.text()} for m in req.messages]
        render = getattr(backend, "render_chat", None)
        if req.logprobs and tokens is None:
            return _error(400, "logprobs need a backend with a tokenizer", "logprobs")
        rendered: dict[str, Any] = {}  # filled on the worker thread: the template may tokenize

        def prepare(_backend: Any) -> list[str]:
            prompt = render(messages) if render else "\n\n".join(m["content"] for m in messages)
            [rendered["count"]] = counted([prompt], req.budget(default_max_tokens))
            rendered["prompt"] = prompt
            return [prompt]

        gens, bad = await served(request, lambda wake: scheduler.generate(
            [messages], req.params(default_max_tokens), prepare=prepare, on_done=wake))
        if bad is not None:
            return bad
        [row] = gens
        if req.logprobs:
            def score_all(_backend: Any) -> list[dict]:
                return [logprobs_of(rendered["prompt"], g.text, req.top_logprobs or 0, echo=False)[0] for g in row]

            scored, bad = await served(request, lambda wake: scheduler.run(score_all, on_done=wake))
            if bad is not None:
                return bad
        else:
            scored = [None] * len(row)
        choices = [{"index": i, "message": {"role": "assistant", "content": g.text},
                    "finish_reason": g.finish_reason, "logprobs": _chat_logprobs(sc) if sc else None}
                   for i, (g, sc) in enumerate(zip(row, scored))]
        response = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                    "model": name, "choices": choices,
                    "usage": _usage(rendered["count"], sum(g.num_tokens for g in row))}
        if not req.stream:
            return response
        return _sse(_chat_chunks(response, req.stream_options))

    app.add_middleware(_AsgiGuard, check=guard)
    return app


class _AsgiGuard:
    """Wraps the app's ASGI stack with ``check(scope, receive, send)``, which calls the stack itself."""

    def __init__(self, app: Any, check: Any) -> None:
        self.app, self.check = app, check

    async def __call__(self, scope, receive, send):
        await self.check(scope, receive, send, self.app)


def _completion_chunks(response: dict[str, Any], options: StreamOptions | None) -> Iterator[dict[str, Any]]:
    head = {k: response[k] for k in ("id", "object", "created", "model")}
    for c in response["choices"]:
        yield {**head, "choices": [{"index": c["index"], "text": c["text"], "logprobs": c["logprobs"],
                                    "finish_reason": None}]}
        yield {**head, "choices": [{"index": c["index"], "text": "", "logprobs": None,
                                    "finish_reason": c["finish_reason"]}]}
    if options is not None and options.include_usage:
        yield {**head, "choices": [], "usage": response["usage"]}


def _chat_chunks(response: dict[str, Any], options: StreamOptions | None) -> Iterator[dict[str, Any]]:
    head = {"id": response["id"], "object": "chat.completion.chunk", "created": response["created"],
            "model": response["model"]}
    for c in response["choices"]:
        yield {**head, "choices": [{"index": c["index"], "delta": {"role": "assistant",
                                                                   "content": c["message"]["content"]},
                                    "logprobs": c["logprobs"], "finish_reason": None}]}
        yield {**head, "choices": [{"index": c["index"], "delta": {}, "logprobs": None,
                                    "finish_reason": c["finish_reason"]}]}
    if options is not None and options.include_usage:
        yield {**head, "choices": [], "usage": response["usage"]}


def _chat_logprobs(body: dict[str, Any]) -> dict[str, Any]:
    """Chat ``logprobs`` object: ``{"content": [{token, logprob, bytes, top_logprobs}]}``."""

    def entry(t: str, lp: float) -> dict[str, Any]:
        return {"token": t, "logprob": lp, "bytes": list(t.encode("utf-8"))}

    tops = body["top_logprobs"] or [{}] * len(body["tokens"])
    return {"content": [{**entry(t, lp), "top_logprobs": [entry(a, b) for a, b in (top or {}).items()]}
                        for t, lp, top in zip(body["tokens"], body["token_logprobs"], tops)]}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def serve_in_thread(backend: Any, host: str = "127.0.0.1", port: int | None = None, model_name: str | None = None,
                    **app_args: Any):
    """Start the server in a daemon thread; returns ``(base_url, stop)`` where ``base_url`` ends in ``/v1``.
    ``app_args`` go to :func:`create_app`."""
    import uvicorn

    port = port or free_port(host)
    config = uvicorn.Config(create_app(backend, model_name, **app_args), host=host, port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError(f"raftlab server did not start on {host}:{port}")
        time.sleep(0.02)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)

    return f"http://{host}:{port}/v1", stop
