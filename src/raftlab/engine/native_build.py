"""Building and loading raftlab's native CPU kernels (``csrc/one_row_step.cpp``): the batch-1 decoding step
(:mod:`raftlab.engine.one_row_step`) and the helpers of the many-row step (:mod:`raftlab.engine.decode_step`,
:mod:`raftlab.engine.cascade_attention`).

The extension is compiled on first use with the machine's C++ compiler through ``torch.utils.cpp_extension``
(tens of seconds, once per machine and build: cached under ``TORCH_EXTENSIONS_DIR``, default
``~/.cache/torch_extensions``). Its name, and so its cache directory, carries the torch version, the compiler's
identity and a hash of the flags and source, so an upgrade never loads a stale library. Builders take an OS file
lock first (released by the kernel when its holder dies), so a build killed midway cannot leave later runs
waiting forever on torch's own lock file: whoever holds raftlab's lock removes a torch lock it finds. Without a
compiler, with ``RAFTLAB_NATIVE=0``, or when another process holds the lock for over ``RAFTLAB_BUILD_TIMEOUT``
seconds (default 600), callers keep their Python paths; the reason is logged once per process.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("csrc") / "one_row_step.cpp"
AVX512_BF16_FLAGS = ("-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512bf16", "-mfma")
#: raftlab's lock file in an extension's build directory; torch's own (``FileBaton``) is ``lock``
LOCK_NAME = "raftlab-build.lock"
TORCH_LOCK_NAME = "lock"
DEFAULT_BUILD_TIMEOUT = 600.0
_loaded: dict[bool, Any] = {}
_loading = threading.Lock()  # one build at a time within a process too


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
    with _loading:
        if avx512_bf16 not in _loaded:
            _loaded[avx512_bf16] = _build(avx512_bf16)
        return _loaded[avx512_bf16]


def extension_name(avx512_bf16: bool) -> str:
    """The extension's module (and cache directory) name: build kind, torch version, compiler identity, and a
    hash of the flags, the Python ABI (torch leaves it out of the path when TORCH_EXTENSIONS_DIR is set) and the
    source."""
    import sysconfig

    import torch

    flags = build_flags(avx512_bf16)
    abi = sysconfig.get_config_var("SOABI") or sys.version
    digest = hashlib.sha256(repr((flags, abi)).encode() + SOURCE.read_bytes()).hexdigest()[:12]
    torch_version = re.sub(r"\W", "_", torch.__version__)
    return f"raftlab_one_row_{'avx512bf16' if avx512_bf16 else 'portable'}_torch{torch_version}_" \
           f"cxx{compiler_identity()}_{digest}"


#: OpenMP: ``at::parallel_for`` in the extension runs on torch's intra-op threads only when compiled with it (the
#: header's OpenMP loop is otherwise a serial loop); the library it links resolves to the ``libgomp.so.1`` torch has
#: already loaded, so both share one thread pool.
OPENMP_FLAGS = ("-fopenmp",)


def build_flags(avx512_bf16: bool) -> list[str]:
    """The extra compiler flags of a build."""
    return ["-O3", *OPENMP_FLAGS, *(AVX512_BF16_FLAGS if avx512_bf16 else ())]


def compiler_identity() -> str:
    """A short hash of the compiler torch builds with (``CXX``, default ``c++``) and its ``--version`` output;
    "none" when it cannot be run (the build then fails and says why)."""
    cxx = os.environ.get("CXX", "c++")
    try:
        version = subprocess.run([*shlex.split(cxx), "--version"], capture_output=True, text=True, timeout=30,
                                 check=False).stdout
    except (OSError, ValueError, subprocess.SubprocessError):
        return "none"
    return hashlib.sha256(f"{cxx}\n{version}".encode()).hexdigest()[:8]


def build_timeout() -> float:
    """Seconds to wait for another process's build (``RAFTLAB_BUILD_TIMEOUT``, default 600)."""
    try:
        return float(os.environ.get("RAFTLAB_BUILD_TIMEOUT", DEFAULT_BUILD_TIMEOUT))
    except ValueError:
        return DEFAULT_BUILD_TIMEOUT


def _build(avx512_bf16: bool) -> Any | None:
    """Build (or load the cached build of) one kind of extension under raftlab's lock; None with a warning."""
    try:
        import warnings

        from torch.utils import cpp_extension

        _put_ninja_on_path()
        name = extension_name(avx512_bf16)
        build_dir = Path(cpp_extension._get_build_directory(name, verbose=False))
        with build_lock(build_dir, build_timeout()):
            remove_stale_torch_lock(build_dir)
            (log.debug if (build_dir / f"{name}.so").exists() else log.info)(
                "compiling raftlab's native decoding kernels (%s; once per machine, about half a minute)",
                "AVX-512 BF16" if avx512_bf16 else "portable")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return cpp_extension.load(name=name, sources=[str(SOURCE)], extra_cflags=build_flags(avx512_bf16),
                                          extra_ldflags=list(OPENMP_FLAGS), verbose=False)
    except Exception as err:  # no compiler, no ninja, a failed build, a build lock held too long: torch paths
        log.warning("raftlab's native decoding kernels are unavailable (%s: %s); decoding with torch operations",
                    type(err).__name__, (str(err).strip().splitlines() or [""])[-1])
        return None


@contextlib.contextmanager
def build_lock(build_dir: Path, timeout: float, poll: float = 0.1) -> Iterator[None]:
    """Hold raftlab's one-builder lock of ``build_dir`` (:func:`raftlab.storage.acquire_lock` on
    ``raftlab-build.lock``: the kernel releases it when the holder exits or is killed). TimeoutError, naming the
    holder's pid, when another process holds it for over ``timeout`` seconds."""
    from raftlab.storage import InUse, acquire_lock

    path = build_dir / LOCK_NAME
    try:
        release = acquire_lock(path, "the native kernels' build", timeout=timeout, poll=poll)
    except InUse as exc:
        raise TimeoutError(f"process {exc.holder} has held the build lock {path} for over {timeout:g} s "
                           "(RAFTLAB_BUILD_TIMEOUT)") from None
    try:
        yield
    finally:
        release()


def remove_stale_torch_lock(build_dir: Path) -> bool:
    """Remove torch's build lock file from ``build_dir`` if one is there (True then). Call only while holding
    :func:`build_lock`: every builder holds it, so a torch lock found then was left by a build that was killed."""
    path = build_dir / TORCH_LOCK_NAME
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    log.warning("removed the stale torch build lock %s (left by an interrupted build of raftlab's native kernels)",
                path)
    return True


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
