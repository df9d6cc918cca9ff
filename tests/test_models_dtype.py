"""The dtype models load in when none is given: bf16 only where the hardware multiplies bf16."""

from __future__ import annotations

import pytest

from raftlab import machine


@pytest.mark.parametrize("flags, expected", [({"avx512f", "avx512_bf16"}, "bfloat16"), ({"amx_bf16"}, "bfloat16"),
                                             ({"avx512f", "avx2"}, "float32"), (set(), "float32")])
def test_cpu_default_follows_the_bf16_hardware(monkeypatch, flags, expected):
    monkeypatch.delenv("RAFTLAB_DTYPE", raising=False)
    monkeypatch.setattr(machine, "cpu_flags", lambda: frozenset(flags))
    assert machine.default_dtype_name("cpu") == expected


def test_the_environment_overrides_the_default(monkeypatch):
    monkeypatch.setattr(machine, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    monkeypatch.setenv("RAFTLAB_DTYPE", "float32")
    assert machine.default_dtype_name("cpu") == "float32"


def test_loading_uses_the_default_and_records_it(monkeypatch):
    import torch

    from raftlab.backends import describe_backend
    from raftlab.backends.hf import HFBackend
    from raftlab.models.loading import _torch_dtype

    monkeypatch.setattr(machine, "cpu_flags", lambda: frozenset())
    monkeypatch.delenv("RAFTLAB_DTYPE", raising=False)
    assert _torch_dtype(None, "cpu") is torch.float32
    with pytest.raises(ValueError, match="unknown dtype 'float33'"):
        _torch_dtype("float33")
    assert describe_backend(HFBackend("tiny", dtype="bfloat16"))["dtype"] == "bfloat16"
