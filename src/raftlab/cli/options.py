"""Command-line options shared by several commands (one definition each)."""

from __future__ import annotations

from typing import Any

import typer

from raftlab.backends.sampling_knobs import EVAL_DEFAULTS, knob_bounds, knob_description

BACKEND_OPTION_HELP = ("engine option KEY=VALUE for the backend (repeatable): vLLM's LLM(...) "
                       "(enforce_eager=true, max_model_len=2048, dtype=bfloat16, tensor_parallel_size=2, "
                       "gpu_memory_utilization=0.8), transformers' from_pretrained or the hf backend "
                       "(attn_implementation=eager, batch_size=16), the OpenAI client or backend (timeout=300, "
                       "concurrency=16); recorded in settings.json, secrets masked")


def backend_options_flag(what: str = "the backend") -> list[str] | None:
    """A fresh ``--backend-option`` / ``-O`` option (typer needs one object per command)."""
    return typer.Option(None, "--backend-option", "-O", help=BACKEND_OPTION_HELP.replace("the backend", what))


def knob_option(name: str, default: Any = ..., *flags: str, help: str | None = None) -> Any:  # noqa: A002
    """A fresh option for sampling knob ``name`` (:mod:`raftlab.backends.sampling_knobs`): its bounds as min/max,
    its description as help (unless ``help`` is given), raftlab's eval default unless ``default`` is given."""
    bounds = knob_bounds(name)
    if "gt" in bounds or "lt" in bounds:  # typer's min/max are inclusive
        raise ValueError(f"knob {name!r} has an open bound; a command-line option cannot say so")
    return typer.Option(getattr(EVAL_DEFAULTS, name) if default is ... else default, *flags, min=bounds.get("ge"),
                        max=bounds.get("le"), help=knob_description(name) if help is None else help)
