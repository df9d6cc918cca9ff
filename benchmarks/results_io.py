"""Write a benchmark's result as one committed JSON file: what was measured, on what, with what, and how.

Every script in ``benchmarks/`` ends with :func:`write_result`, which adds the common fields to its measured
numbers and writes ``benchmarks/results/<name>.json`` (or ``--out``):

* ``benchmark`` (the kind), ``date`` (``YYYY-MM-DD``) and ``timestamp`` (UTC, ISO 8601);
* ``command``: the exact command line (``sys.executable`` and ``sys.argv``), and ``env``: the environment
  variables that change a measurement (thread counts, ``RAFTLAB_*``);
* ``machine``: :func:`raftlab.machine.describe_machine` plus the CPU's bf16/AVX flags, the CPUs this process may
  run on (``taskset``) and the memory;
* ``threads``: torch's CPU threads during the run;
* ``versions``: python, torch, transformers, raftlab and the git commit of this checkout (``raftlab_commit``,
  ``raftlab_dirty`` when the working tree had changes outside ``benchmarks/results``);
* ``headline``: the few numbers ``render_table.py`` shows (``[{"label", "value", "unit"}]``) and ``ratios``:
  raftlab against the baselines measured in the same run (``[{"label", "value"}]``).

``benchmarks/render_table.py`` renders every results file into the table of ``benchmarks/README.md``; the docs
cite the files for each number (docs/performance.md). Importing this module is cheap (no torch).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: ``benchmarks/results/``, where committed results live.
RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]

#: Fields every committed results file has (tests/test_benchmark_results.py checks them).
REQUIRED = ("benchmark", "date", "command", "machine", "versions")

#: CPU flags that decide which kernels run (bf16 hardware, AVX-512, AMX).
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")

#: Environment variables recorded with a result when set (and every ``RAFTLAB_*`` one but those below).
ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "HF_HUB_OFFLINE")
#: Never recorded: raftlab's own bookkeeping, and anything that may hold a secret.
ENV_SKIP = ("RAFTLAB_ANNOUNCED",)
SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "AUTH")


def add_out_argument(parser: argparse.ArgumentParser, what: str = "benchmarks/results/<name>.json") -> None:
    """``--out PATH`` (default: ``what``) and ``--no-save`` (print only)."""
    parser.add_argument("--out", type=Path, default=None, help=f"where to write the result JSON (default: {what})")
    parser.add_argument("--no-save", action="store_true", help="print the result, write no file")


def git_commit(repo: Path = REPO) -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the checkout at ``repo`` (``(None, None)`` outside git)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                 ":(exclude)benchmarks/results"], cwd=repo, capture_output=True, text=True,
                                timeout=10).stdout  # a results file written by an earlier run changes no code
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit, (bool(status.strip()) if commit else None)


def versions() -> dict[str, Any]:
    """python, torch, transformers, raftlab and the checkout's commit."""
    from importlib import metadata

    out: dict[str, Any] = {"python": platform.python_version()}
    for name in ("torch", "transformers", "raftlab"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    try:
        import torch

        out["torch"] = torch.__version__  # the local tag (+cpu, +cu128) too
        if torch.cuda.is_available():
            out["cuda"] = torch.version.cuda
    except ImportError:
        pass
    out["raftlab_commit"], out["raftlab_dirty"] = git_commit()
    return out


def machine(device: str | None = None) -> dict[str, Any]:
    """:func:`raftlab.machine.describe_machine` plus CPU flags, affinity and memory."""
    from raftlab.machine import cpu_flags, describe_machine

    info = describe_machine(device)
    flags = cpu_flags()
    info["cpu_flags"] = [f for f in CPU_FLAGS if f in flags]
    if hasattr(os, "sched_getaffinity"):
        info["cpu_affinity"] = sorted(os.sched_getaffinity(0))
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 1e9, 1)
    except ImportError:
        pass
    info["platform"] = platform.platform()
    return info


def command_line() -> str:
    """This process's command line, as it was typed (``sys.executable`` for ``python``)."""
    return shlex.join([sys.executable, *sys.argv])


def recorded_env() -> dict[str, str]:
    """The environment variables that change a measurement (never a secret)."""
    return {k: os.environ[k] for k in sorted(os.environ)
            if (k in ENV_VARS or k.startswith("RAFTLAB_")) and k not in ENV_SKIP
            and not any(w in k.upper() for w in SECRET_WORDS)}


def environment(device: str | None = None) -> dict[str, Any]:
    """The common fields of a result (all but ``benchmark``, the numbers, ``headline`` and ``ratios``)."""
    try:
        import torch

        threads = torch.get_num_threads()
    except ImportError:
        threads = None
    return {"date": time.strftime("%Y-%m-%d"),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": command_line(),
            "env": recorded_env(),
            "machine": machine(device), "threads": threads, "versions": versions()}


def headline(label: str, value: float, unit: str) -> dict[str, Any]:
    return {"label": label, "value": value, "unit": unit}


def ratio(label: str, value: float) -> dict[str, Any]:
    return {"label": label, "value": round(value, 3)}


def result_path(name: str) -> Path:
    return RESULTS_DIR / f"{name}.json"


def write_result(benchmark: str, numbers: dict[str, Any], *, name: str, out: Path | None = None,
                 save: bool = True, device: str | None = None, common: dict[str, Any] | None = None) -> Path | None:
    """Write ``{"benchmark": benchmark, <common fields>, **numbers}`` to ``out`` (default
    ``benchmarks/results/<name>.json``) and print where; ``common`` replaces :func:`environment` (a result
    recorded after the fact keeps its own command). Returns the path (``None`` with ``save=False``)."""
    result = {"benchmark": benchmark, **(common if common is not None else environment(device)), **numbers}
    missing = [k for k in REQUIRED if not result.get(k)]
    if missing:
        raise ValueError(f"a result needs {', '.join(missing)}")
    text = json.dumps(result, indent=2, ensure_ascii=False) + "\n"
    if not save:
        print(text, end="")
        return None
    path = out or result_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"result written to {path} (python benchmarks/render_table.py updates benchmarks/README.md)")
    return path


def slug(*parts: object) -> str:
    """A file-name-safe name from ``parts`` (``sc_smollm2_bfloat16_cpu``)."""
    text = "_".join(str(p) for p in parts if p not in (None, ""))
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text.replace("/", "-")).strip("-_.")
