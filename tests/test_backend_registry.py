"""Backends are a lazy registry (``"module:Class"`` per kind): a spec imports only the class it names, and a kind
of one's own plugs in without editing raftlab."""

from __future__ import annotations

import subprocess
import sys

import pytest

from raftlab.backends import BACKENDS, backend_class, get_backend, register_backend


class EchoBackend:
    """A user's backend: answers every prompt with itself."""

    name = "echo"
    thread_safe = True

    def __init__(self, model: str, base_url: str | None = None, **options) -> None:
        self.model_name, self.base_url, self.extra = model, base_url, options


def test_a_registered_kind_builds_from_its_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BACKENDS, "echo", f"{__name__}:EchoBackend")
    backend = get_backend("echo:any-model", {"api_key": "s3cret", "depth": 2})
    assert isinstance(backend, EchoBackend) and backend.model_name == "any-model"
    assert backend.extra == {"api_key": "s3cret", "depth": 2} and backend.options == {"api_key": "***", "depth": 2}


def test_register_refuses_clashes_and_malformed_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("raftlab.backends.BACKENDS", dict(BACKENDS))
    from raftlab import backends

    with pytest.raises(ValueError, match="already registered"):
        register_backend("hf", f"{__name__}:EchoBackend")
    with pytest.raises(ValueError, match="package.module:Class"):
        register_backend("mine", "no_colon")
    register_backend("mine", f"{__name__}:EchoBackend")
    assert backends.BACKENDS["mine"].endswith(":EchoBackend")
    with pytest.raises(ValueError, match="unknown backend kind 'nope'"):
        backend_class("nope")


def test_parsing_a_spec_imports_no_backend() -> None:
    code = ("import sys; from raftlab.backends import parse_spec, is_thread_safe; parse_spec('hf:tiny'); "
            "assert is_thread_safe('openai:m@http://x/v1'); "
            "print(sorted(m for m in sys.modules if m in ('torch', 'raftlab.backends.hf', 'raftlab.engine', "
            "'raftlab.backends.vllm_backend')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
