"""The name transformers gives a forward's KV cache: ``cache`` in newer releases, ``past_key_values`` before.

Shared by decoding (:mod:`raftlab.engine.prefill`) and training (:mod:`raftlab.training.shared_prefix`)."""

from __future__ import annotations

from typing import Any


def cache_argument(model: Any) -> str:
    """The name of the KV-cache argument of ``model``'s forward (and of its output): ``cache`` in newer
    transformers, ``past_key_values`` (deprecated there) before."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def cache_of(out: Any, cache_arg: str) -> Any:
    """The KV cache of a forward's output."""
    return out.cache if cache_arg == "cache" else out.past_key_values
