"""``raftlab serve``'s HTTP routes (FastAPI): each binds a path to a handler of the app's
:class:`~raftlab.serve.serving.OpenAIServing` (``app.state.serving``), and framework errors become OpenAI error
bodies (a request that fails validation: 400 naming the field in ``param``)."""

from __future__ import annotations

from typing import Any

# module level: FastAPI resolves the endpoints' (string) annotations in this module's namespace
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from raftlab.serve.protocol import (
    ChatRequest,
    CompletionRequest,
    DetokenizeRequest,
    TokenizeRequest,
    error_response,
)
from raftlab.serve.serving import OpenAIServing

router = APIRouter()


def _serving(request: Request) -> OpenAIServing:
    return request.app.state.serving


@router.get("/v1/models")
def models(request: Request) -> dict[str, Any]:
    return _serving(request).models()


@router.get("/tokenizer_info")
async def tokenizer_info(request: Request):
    return await _serving(request).tokenizer_info(request)


@router.post("/tokenize")
async def tokenize(req: TokenizeRequest, request: Request):
    return await _serving(request).tokenize(req, request)


@router.post("/detokenize")
async def detokenize(req: DetokenizeRequest, request: Request):
    return await _serving(request).detokenize(req, request)


@router.post("/v1/completions")
async def completions(req: CompletionRequest, request: Request):
    return await _serving(request).completions(req, request)


@router.post("/v1/chat/completions")
async def chat(req: ChatRequest, request: Request):
    return await _serving(request).chat(req, request)


async def invalid_request(request: Request, exc: RequestValidationError):
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors())
    first = exc.errors()[0]["loc"][1:] if exc.errors() else ()
    return error_response(400, problems, param=".".join(str(p) for p in first) or None)


async def http_error(request: Request, exc: StarletteHTTPException):
    return error_response(exc.status_code, str(exc.detail),
                          "not_found_error" if exc.status_code == 404 else "invalid_request_error")


#: The exception handlers :func:`~raftlab.serve.app.create_app` installs.
EXCEPTION_HANDLERS = {RequestValidationError: invalid_request, StarletteHTTPException: http_error}
