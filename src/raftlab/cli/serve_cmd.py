"""``raftlab serve``: an OpenAI-compatible server over a local model."""

from __future__ import annotations

import typer

from raftlab.cli.options import backend_options_flag


def warn_if_exposed(host: str, api_key: str | None) -> bool:
    """Log a warning (and return True) when ``host`` is not a loopback address and no API key is set."""
    import ipaddress
    import logging

    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback or api_key is not None:
        return False
    logging.getLogger("raftlab.serve").warning(
        "binding %s without --api-key: anyone who can reach this address can use the model", host)
    return True


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve_cmd(
        model: str = typer.Argument(..., help="model spec: smollm2, tiny, a model dir, a hub id"),
        host: str = typer.Option("127.0.0.1", help="bind address (keep it on loopback unless you mean it)"),
        port: int = typer.Option(8000, min=0, max=65535),
        name: str = typer.Option(None, help="model name reported by /v1/models (default: the spec)"),
        chat_template: bool = typer.Option(False, help="wrap completions prompts in the chat template too"),
        max_tokens: int = typer.Option(256, min=1, help="default max_tokens"),
        api_key: str = typer.Option(None, "--api-key", envvar="RAFTLAB_API_KEY",
                                    help="require 'Authorization: Bearer KEY' (env RAFTLAB_API_KEY)"),
        max_queue: int = typer.Option(64, min=1, help="requests allowed to wait; more get 503"),
        batching: bool = typer.Option(True, help="decode waiting requests with the same settings as one batch"),
        backend_option: list[str] = backend_options_flag("the served model"),
    ) -> None:
        """Serve /v1/completions, /v1/chat/completions and /v1/models for MODEL."""
        import uvicorn

        from raftlab.backends import get_backend, parse_backend_options
        from raftlab.serve import create_app

        warn_if_exposed(host, api_key)
        backend = get_backend(f"hf:{model}", parse_backend_options(backend_option), chat_template=chat_template)
        getattr(backend, "warm_up", lambda: None)()  # a first request should not wait for a kernel build
        typer.echo(f"serving {model} on http://{host}:{port}/v1" + (" (API key required)" if api_key else ""))
        uvicorn.run(create_app(backend, name or model, max_tokens, api_key=api_key, max_queue=max_queue,
                               batching=batching), host=host, port=port, log_level="info")
