"""Building and starting ``raftlab serve``'s app: :func:`create_app` wires the scheduler, the handlers, the routes
and the request guard together; :func:`serve_in_thread` runs it with uvicorn in a background thread (tests,
benchmarks)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from raftlab.serve.guard import MAX_BODY_BYTES, Guard
from raftlab.serve.scheduler import BatchScheduler
from raftlab.serve.serving import OpenAIServing


def create_app(backend: Any, model_name: str | None = None, default_max_tokens: int = 256,
               api_key: str | None = None, max_body_bytes: int = MAX_BODY_BYTES, max_queue: int = 64,
               batching: bool = True):
    """FastAPI app serving ``backend`` (anything implementing the Backend protocol; ``render_chat`` optional; the
    tokenizer endpoints, echo and logprobs need an hf backend's ``tokenizer``, ``encode_prompt`` and ``score_ids``).

    With ``api_key`` every request must carry ``Authorization: Bearer <api_key>`` (else 401). Bodies over
    ``max_body_bytes`` get 413 (counted as they arrive, so chunked bodies too); a prompt plus ``max_tokens`` beyond
    the model's context gets 400.

    Model work runs in one worker thread (:class:`~raftlab.serve.scheduler.BatchScheduler`): generation requests
    waiting together with the same sampling settings are decoded as one batch (``batching=False``: one request at
    a time); more than ``max_queue`` waiting requests get 503; a request whose client disconnects is cancelled
    (dropped from the queue, or stopped at the next token by a cancellable backend).

    The app's state is ``app.state.scheduler`` and ``app.state.serving`` (the handlers the routes call); the
    scheduler's worker stops when the app shuts down."""
    from fastapi import FastAPI  # here, not at module level: importing raftlab.serve does not import fastapi

    from raftlab.serve.routes import EXCEPTION_HANDLERS, router

    app = FastAPI(title="raftlab serve")
    scheduler = BatchScheduler(backend, max_queue=max_queue, combine=batching)
    app.state.scheduler = scheduler
    app.state.serving = OpenAIServing(backend, scheduler, model_name, default_max_tokens)
    app.router.on_shutdown.append(scheduler.close)
    for exc_class, handler in EXCEPTION_HANDLERS.items():
        app.add_exception_handler(exc_class, handler)
    app.include_router(router)
    app.add_middleware(Guard, api_key=api_key, max_body_bytes=max_body_bytes)
    return app


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` now."""
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
