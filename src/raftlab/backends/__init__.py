"""Model backends behind one interface: ``hf`` (transformers), ``vllm`` (optional), ``openai`` (any
OpenAI-compatible endpoint), plus ``raftlab serve``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raftlab.backends.base import Backend, ContinuationScore, Generation, SamplingParams

BACKENDS = ("hf", "vllm", "openai")


def parse_spec(spec: str) -> tuple[str, str, str | None]:
    """``"hf:tiny"`` -> ("hf", "tiny", None); ``"openai:gpt-4o-mini@http://host/v1"`` -> (.., .., base_url).

    A spec without a known prefix is taken as an hf model spec.
    """
    kind, sep, rest = spec.partition(":")
    if sep and kind not in BACKENDS and "/" not in kind and not Path(spec).exists():
        raise ValueError(f"unknown backend {kind!r} in {spec!r}; use one of {', '.join(b + ':' for b in BACKENDS)} "
                         "or a model spec without a prefix")
    if not sep or kind not in BACKENDS:
        kind, rest = "hf", spec
    if not rest:
        raise ValueError(f"backend spec {spec!r} names no model; e.g. 'hf:smollm2' or 'openai:gpt-4o-mini'")
    base_url = None
    if kind == "openai" and "@" in rest:
        rest, base_url = rest.split("@", 1)
    return kind, rest, base_url


def backend_class(kind: str) -> type:
    """The class of backend ``kind`` (imported on demand: vllm is an optional extra)."""
    if kind == "hf":
        from raftlab.backends.hf import HFBackend

        return HFBackend
    if kind == "vllm":
        from raftlab.backends.vllm_backend import VLLMBackend

        return VLLMBackend
    if kind == "openai":
        from raftlab.backends.openai_backend import OpenAIBackend

        return OpenAIBackend
    raise ValueError(f"unknown backend kind {kind!r}; choose one of {', '.join(BACKENDS)}")


def is_thread_safe(spec: str) -> bool:
    """Whether the backend a spec names serves concurrent requests (see ``Backend.thread_safe``)."""
    return bool(backend_class(parse_spec(spec)[0]).thread_safe)


def get_backend(spec: str, **kwargs: Any) -> Backend:
    """Build a backend from ``hf:<model>``, ``vllm:<model>`` or ``openai:<model>[@base_url]``."""
    kind, model, base_url = parse_spec(spec)
    cls = backend_class(kind)
    return cls(model, base_url=base_url, **kwargs) if kind == "openai" else cls(model, **kwargs)


def describe_backend(backend: Any) -> dict[str, Any]:
    """What to record about a backend in run settings (no secrets)."""
    if hasattr(backend, "describe"):
        return backend.describe()
    return {"backend": getattr(backend, "name", type(backend).__name__),
            "model": getattr(backend, "model_name", None)}


__all__ = ["Backend", "BACKENDS", "ContinuationScore", "Generation", "SamplingParams", "backend_class",
           "describe_backend", "get_backend", "is_thread_safe", "parse_spec"]
