"""Building and loading raftlab's native CPU kernels (``csrc/one_row_step.cpp``): the batch-1 decoding step
(:mod:`raftlab.backends.native_step`) and the helpers of the many-row step (:mod:`raftlab.backends.decode_step`,
:mod:`raftlab.backends.cascade`).

The extension is compiled on first use with the machine's C++ compiler through ``torch.utils.cpp_extension``
(tens of seconds, once per machine and source version: cached under ``TORCH_EXTENSIONS_DIR``, default
``~/.cache/torch_extensions``). Without a compiler, or with ``RAFTLAB_NATIVE=0``, callers keep their Python
paths; a failed build is reported once per process.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("csrc") / "one_row_step.cpp"
_loaded: dict[bool, Any] = {}


def native_enabled() -> bool:
    """False when ``RAFTLAB_NATIVE`` is set to 0 / false / no."""
    return os.environ.get("RAFTLAB_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off")


def load_extension(avx512_bf16: bool | None = None) -> Any | None:
    """The compiled extension (compiled on first use), or None with the reason logged once. ``avx512_bf16``:
    build with AVX-512 BF16 dot products; False builds portable loops (the same results up to summation order,
    but slower than torch's kernels: for tests on any CPU). Default: the AVX-512 BF16 build where this CPU has
    those instructions, else None (callers keep their torch paths)."""
    from raftlab.machine import cpu_flags

    if avx512_bf16 is None:
        if "avx512_bf16" not in cpu_flags():
            return None
        avx512_bf16 = True
    if avx512_bf16 in _loaded:
        return _loaded[avx512_bf16]
    module = None
    try:
        import warnings

        from torch.utils import cpp_extension

        _put_ninja_on_path()
        digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
        flags = ["-O3"] + (["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512bf16", "-mfma"] if avx512_bf16 else [])
        name = f"raftlab_one_row_{'avx512bf16' if avx512_bf16 else 'portable'}_{digest}"
        built = Path(cpp_extension._get_build_directory(name, verbose=False), f"{name}.so").exists()
        (log.debug if built else log.info)(
            "compiling raftlab's native decoding kernels (%s; once per machine, about half a minute)",
            "AVX-512 BF16" if avx512_bf16 else "portable")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = cpp_extension.load(name=name, sources=[str(SOURCE)], extra_cflags=flags, verbose=False)
    except Exception as err:  # no compiler, no ninja, a failed build: callers keep their torch paths
        log.warning("raftlab's native decoding kernels are unavailable (%s: %s); decoding with torch operations",
                    type(err).__name__, (str(err).strip().splitlines() or [""])[-1])
    _loaded[avx512_bf16] = module
    return module


def _put_ninja_on_path() -> None:
    """torch builds extensions with the ``ninja`` on PATH; the ``ninja`` wheel (a dependency) installs one next to
    the interpreter, which is not on PATH when the virtual environment is not activated."""
    try:
        import ninja
    except ImportError:
        return
    bin_dir = getattr(ninja, "BIN_DIR", None)
    if bin_dir and bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
