"""What a number was measured on: a short description of this machine and the torch device (a leaf module)."""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux, else ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (from /proc/cpuinfo on Linux; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX-512 BF16 or AMX); without it bf16 is emulated and slower
    than fp32."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def matmul_gflops(dtype: Any, device: str = "cpu", size: int = 1024, repeats: int = 20,
                  threads: int | None = None) -> float:
    """This machine's matrix-multiply rate in ``dtype`` (GFLOP/s of ``size``-cubed products after a warm-up), on
    ``threads`` torch threads where given (restored after)."""
    import time

    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        a = torch.randn(size, size, device=device).to(dtype)
        b = torch.randn(size, size, device=device).to(dtype)
        for _ in range(3):
            a @ b
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(repeats):
            a @ b
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return 2 * size**3 * repeats / (time.perf_counter() - t0) / 1e9
    finally:
        torch.set_num_threads(before)


def default_dtype_name(device: str) -> str:
    """The dtype raftlab loads models in when none is given: bf16 on GPUs that support it and on CPUs with bf16
    hardware, else fp32. ``RAFTLAB_DTYPE`` (e.g. ``float32``) overrides it."""
    override = os.environ.get("RAFTLAB_DTYPE")
    if override:
        return override
    if device.startswith("cuda"):
        import torch

        return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if device == "cpu" and cpu_has_fast_bf16() else "float32"


def describe_machine(device: str | None = None) -> dict[str, Any]:
    """``{"cpu", "cores", "torch_threads", "device", "gpu"}`` for recording next to a time."""
    import torch

    info: dict[str, Any] = {"cpu": cpu_model(), "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                            else os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": device or "cpu"}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def machine_line(info: dict[str, Any]) -> str:
    """One line for a report: ``"Intel(R) Xeon(R) Processor, 2 cores, 2 torch threads"`` (plus the GPU)."""
    line = f"{info.get('cpu', '?')}, {info.get('cores', '?')} cores, {info.get('torch_threads', '?')} torch threads"
    return line + (f", GPU {info['gpu']}" if info.get("gpu") else "")


#: Keys already announced by :func:`first_time` in this process or the study process that forked it.
ONCE_ENV = "RAFTLAB_ANNOUNCED"


def first_time(key: str) -> bool:
    """True the first time ``key`` is seen by this process and the processes it shares a run with (a study's
    stage processes send the keys back, :mod:`raftlab.study.isolation`): for messages printed once per run."""
    seen = set(filter(None, os.environ.get(ONCE_ENV, "").split(";")))
    if key in seen:
        return False
    os.environ[ONCE_ENV] = ";".join(sorted(seen | {key}))
    return True


class PeakRSS:
    """Peak resident memory (bytes) of this process while a ``with`` block runs, sampled every ``interval``
    seconds by a daemon thread (plus once at the start and the end)."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval, self.peak, self.start = interval, 0, 0

    def __enter__(self) -> PeakRSS:
        import threading

        import psutil

        self._proc, self._stop = psutil.Process(), threading.Event()
        self.start = self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def release_memory() -> int:
    """Collect garbage and hand freed heap pages back to the OS (glibc ``malloc_trim``), so that one stage's
    model does not stay in the process's resident memory for the next; returns the RSS after (bytes)."""
    import ctypes
    import gc

    import psutil

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass
    return psutil.Process().memory_info().rss
