"""What every request to ``raftlab serve`` must pass before it reaches a route: the API key and the body-size limit.

Pure ASGI middleware (Starlette's ``BaseHTTPMiddleware`` would hide client disconnects from the endpoints, and
they cancel requests). The body is counted as it arrives, so a chunked body (no Content-Length) is limited too.
"""

from __future__ import annotations

import hmac
from collections import deque
from typing import Any

from raftlab.serve.protocol import error_response

#: Largest request body accepted (bytes); larger ones get 413.
MAX_BODY_BYTES = 4 * 1024 * 1024


class Guard:
    """ASGI middleware around ``app``: with ``api_key`` a request must carry ``Authorization: Bearer <api_key>``
    (else 401); a body over ``max_body_bytes`` gets 413."""

    def __init__(self, app: Any, *, api_key: str | None = None, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app, self.api_key, self.max_body_bytes = app, api_key, max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            if (refusal := self._refusal(scope)) is not None:
                return await refusal(scope, receive, send)
            if (replay := await read_body(receive, self.max_body_bytes)) is None:
                return await error_response(413, f"request body is over the limit of {self.max_body_bytes} bytes"
                                            )(scope, receive, send)
            receive = replay
        return await self.app(scope, receive, send)

    def _refusal(self, scope: dict[str, Any]) -> Any:
        """The error response for a wrong API key or a declared body size over the limit, else None."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.api_key is not None and not hmac.compare_digest(headers.get("authorization", "").encode(),
                                                                f"Bearer {self.api_key}".encode()):
            return error_response(401, "missing or wrong API key (send 'Authorization: Bearer <key>')",
                                  "authentication_error")
        size = headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > self.max_body_bytes:
            return error_response(413, f"request body of {size} bytes is over the limit of {self.max_body_bytes}")
        return None


async def read_body(receive: Any, limit: int) -> Any:
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
