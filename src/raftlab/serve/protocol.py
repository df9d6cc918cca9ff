"""The wire format of ``raftlab serve``: request models (pydantic, unknown fields refused) and the OpenAI shapes of
responses, stream chunks and error bodies.

Responses are plain dicts in OpenAI's shapes, built by the functions here; fields that would change the result and
that raftlab does not implement are refused by the request models (a 400), not ignored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from raftlab.backends.base import SamplingParams
from raftlab.backends.sampling_knobs import knob_field

#: Most samples one request may ask for (``n``).
MAX_N = 128


class _Strict(BaseModel):
    """A request object: unknown fields are an error."""

    model_config = ConfigDict(extra="forbid")


class StreamOptions(_Strict):
    include_usage: bool = False


class GenerationRequest(_Strict):
    """What completions and chat completions share: the model name, the sampling knobs and streaming.

    The knobs keep the OpenAI API's names and defaults (``temperature`` 1.0, ``max_tokens``, unseeded): they are
    the protocol's, not raftlab's choice. Their meaning and bounds are :mod:`raftlab.backends.sampling_knobs`'s
    except where the protocol's differ: ``top_p`` 0 is refused (as vLLM does), ``top_k`` takes vLLM's -1 for no
    limit, and ``max_tokens`` may be 0 (a completion with echo that only scores its prompt)."""

    model: str | None = None
    n: int = Field(1, ge=1, le=MAX_N)
    temperature: float = knob_field("temperature", 1.0)
    top_p: float = knob_field("top_p", 1.0, gt=0.0, ge=None)
    top_k: int | None = knob_field("top_k", None, ge=-1, description="vLLM extension: draw from this many most "
                                   "likely tokens (-1, 0 or null: no limit)")
    max_tokens: int | None = knob_field("max_new_tokens", None, ge=0, description="generation budget: new tokens "
                                        "per sample (default: the server's; completions with echo: 0 scores the "
                                        "prompt only)")
    max_completion_tokens: int | None = Field(None, ge=0, description="the newer name of max_tokens (wins over it)")
    stop: str | list[str] | None = None
    seed: int | None = knob_field("seed", None)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None  # recorded by OpenAI for abuse monitoring; no effect on the result
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[str, float] | None = None

    @model_validator(mode="after")
    def _refuse_unimplemented(self) -> GenerationRequest:
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


class CompletionRequest(GenerationRequest):
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


class ChatRequest(GenerationRequest):
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


# ---------------------------------------------------------------------------------------------------- responses
def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def error_response(status: int, message: str, kind: str = "invalid_request_error", param: str | None = None):
    """An OpenAI error: ``{"error": {"message", "type", "param", "code"}}`` with HTTP ``status``."""
    from fastapi.responses import JSONResponse

    return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind, "param": param,
                                                               "code": None}})


def sse(chunks: Iterator[dict[str, Any]]):
    """A server-sent-events response: one ``data:`` event per chunk, then ``data: [DONE]``."""
    from fastapi.responses import StreamingResponse

    def events() -> Iterator[str]:
        for chunk in chunks:
            yield f"data: {json.dumps(chunk)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


def completion_chunks(response: dict[str, Any], options: StreamOptions | None) -> Iterator[dict[str, Any]]:
    """A finished completions ``response`` as stream chunks: each choice's text, its finish reason, the usage."""
    head = {k: response[k] for k in ("id", "object", "created", "model")}
    for c in response["choices"]:
        yield {**head, "choices": [{"index": c["index"], "text": c["text"], "logprobs": c["logprobs"],
                                    "finish_reason": None}]}
        yield {**head, "choices": [{"index": c["index"], "text": "", "logprobs": None,
                                    "finish_reason": c["finish_reason"]}]}
    if options is not None and options.include_usage:
        yield {**head, "choices": [], "usage": response["usage"]}


def chat_chunks(response: dict[str, Any], options: StreamOptions | None) -> Iterator[dict[str, Any]]:
    """A finished chat ``response`` as ``chat.completion.chunk`` deltas: each message, its finish reason, usage."""
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


def chat_logprobs(body: dict[str, Any]) -> dict[str, Any]:
    """Chat ``logprobs`` object (``{"content": [{token, logprob, bytes, top_logprobs}]}``) from a completions-style
    ``logprobs`` body."""

    def entry(t: str, lp: float) -> dict[str, Any]:
        return {"token": t, "logprob": lp, "bytes": list(t.encode("utf-8"))}

    tops = body["top_logprobs"] or [{}] * len(body["tokens"])
    return {"content": [{**entry(t, lp), "top_logprobs": [entry(a, b) for a, b in (top or {}).items()]}
                        for t, lp, top in zip(body["tokens"], body["token_logprobs"], tops)]}
