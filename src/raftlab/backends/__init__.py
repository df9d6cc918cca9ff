"""Model backends behind one interface: ``hf`` (transformers), ``vllm`` (optional), ``openai`` (any
OpenAI-compatible endpoint). ``raftlab serve``, which serves one of them over HTTP, is :mod:`raftlab.serve`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raftlab.backends.base import Backend, ContinuationScore, Generation, SamplingParams

#: Backend kinds and where their classes live, imported only when a spec names them (vllm is an optional extra;
#: torch is not imported to parse a spec). :func:`register_backend` adds a kind of your own.
BACKENDS: dict[str, str] = {
    "hf": "raftlab.backends.hf:HFBackend",
    "vllm": "raftlab.backends.vllm_backend:VLLMBackend",
    "openai": "raftlab.backends.openai_backend:OpenAIBackend",
}


def register_backend(kind: str, target: str, replace: bool = False) -> None:
    """Make ``<kind>:<model>`` specs build ``target`` (``"package.module:Class"``, imported on first use; the
    class takes the model name and its options as keyword arguments). The registration lives in this process:
    a study runs its stages in child processes (``executor.isolate``), so register the kind in code those
    import, or run the study with ``executor: {isolate: false}``."""
    if kind in BACKENDS and not replace:
        raise ValueError(f"backend kind {kind!r} is already registered ({BACKENDS[kind]}); pass replace=True")
    if ":" not in target:
        raise ValueError(f"backend target {target!r}: expected 'package.module:Class'")
    BACKENDS[kind] = target


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
    if kind == "openai" and "@" in rest:  # an endpoint: openai:<model>@<base_url>
        rest, base_url = rest.split("@", 1)
    return kind, rest, base_url


def without_endpoint(spec: str) -> str:
    """``openai:model`` for ``openai:model@URL``, other specs unchanged: the model without where it is served
    (the same model served elsewhere gives the same results), as stage keys and stored settings name it."""
    kind, model, _endpoint = parse_spec(spec)
    return f"{kind}:{model}" if kind == "openai" else spec


def backend_class(kind: str) -> type:
    """The class of backend ``kind``, imported on demand from :data:`BACKENDS`."""
    import importlib

    target = BACKENDS.get(kind)
    if target is None:
        raise ValueError(f"unknown backend kind {kind!r}; choose one of {', '.join(BACKENDS)}")
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def is_thread_safe(spec: str) -> bool:
    """Whether the backend a spec names serves concurrent requests (see ``Backend.thread_safe``)."""
    return bool(backend_class(parse_spec(spec)[0]).thread_safe)


def parse_backend_options(items: list[str] | tuple[str, ...] | None, option: str = "--backend-option"
                          ) -> dict[str, Any]:
    """``["enforce_eager=true", "max_model_len=2048"]`` -> ``{"enforce_eager": True, "max_model_len": 2048}``.

    Values are read as YAML scalars (true/false, numbers, null, ``[lists]``, ``{maps}``), else kept as strings."""
    import yaml

    options: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{option} {item!r}: expected KEY=VALUE, e.g. {option} enforce_eager=true")
        try:
            options[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            options[key.strip()] = value
    return options


#: option names whose values are never recorded (settings.json, manifests)
SECRET_WORDS = ("key", "token", "secret", "password", "authorization")


def public_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """``options`` with secret-looking values replaced by ``"***"`` (what run settings record)."""
    return {k: ("***" if any(w in k.lower() for w in SECRET_WORDS) else v) for k, v in (options or {}).items()}


def get_backend(spec: str, options: dict[str, Any] | None = None, **kwargs: Any) -> Backend:
    """Build a backend from ``hf:<model>``, ``vllm:<model>`` or ``openai:<model>[@base_url]``.

    ``kwargs`` are raftlab's own settings for the backend (batch size, concurrency); ``options`` are the user's
    engine options (``--backend-option``, a study's ``backend_options``), which override them and go where the
    engine takes them: vLLM's ``LLM(...)``, transformers' ``from_pretrained`` (or the hf backend's own
    arguments), the OpenAI client (or the openai backend's own arguments). Run settings record them, secrets
    masked."""
    kind, model, base_url = parse_spec(spec)
    cls = backend_class(kind)
    merged = {**kwargs, **(options or {})}
    backend = cls(model, base_url=base_url, **merged) if base_url is not None else cls(model, **merged)
    backend.options = public_options(options)
    return backend


def describe_backend(backend: Any) -> dict[str, Any]:
    """What to record about a backend in run settings (no secrets)."""
    described = backend.describe() if hasattr(backend, "describe") else {
        "backend": getattr(backend, "name", type(backend).__name__), "model": getattr(backend, "model_name", None)}
    if getattr(backend, "options", None):
        described["options"] = dict(backend.options)
    return described


__all__ = ["Backend", "BACKENDS", "ContinuationScore", "Generation", "SamplingParams", "backend_class",
           "describe_backend", "get_backend", "is_thread_safe", "parse_backend_options", "parse_spec",
           "public_options", "register_backend", "without_endpoint"]
