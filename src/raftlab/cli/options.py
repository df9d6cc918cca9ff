"""Command-line options shared by several commands (one definition each)."""

from __future__ import annotations

import typer

BACKEND_OPTION_HELP = ("engine option KEY=VALUE for the backend (repeatable): vLLM's LLM(...) "
                       "(enforce_eager=true, max_model_len=2048, dtype=bfloat16, tensor_parallel_size=2, "
                       "gpu_memory_utilization=0.8), transformers' from_pretrained or the hf backend "
                       "(attn_implementation=eager, batch_size=16), the OpenAI client or backend (timeout=300, "
                       "concurrency=16); recorded in settings.json, secrets masked")


def backend_options_flag(what: str = "the backend") -> list[str] | None:
    """A fresh ``--backend-option`` / ``-O`` option (typer needs one object per command)."""
    return typer.Option(None, "--backend-option", "-O", help=BACKEND_OPTION_HELP.replace("the backend", what))
