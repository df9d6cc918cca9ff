"""``raftlab doctor [CONFIG]``: is this machine ready to run this study? One check per line, each with its fix.

Each check is a function returning a :class:`Check`: ``ok``, ``FAIL`` (a required check that failed: the study
would stop on it), ``warn`` (it may still run, e.g. a model the study would download) or ``skip`` (not needed by
this config, or not checkable here). Nothing is downloaded, built or written; the only network use is one
one-token request to an OpenAI-compatible teacher, whose key is never printed or stored.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raftlab.study.config import StudyConfig

#: Headroom over the weights' bytes when serving a model (activations, KV cache, CUDA context).
SERVE_OVERHEAD = 1.2
#: Bytes per parameter of full finetuning (bf16 weights and gradients, fp32 master copy and Adam's moments),
#: shared over the launcher's processes (FSDP/ZeRO-3).
TRAIN_BYTES_PER_PARAM = 16


@dataclass(frozen=True)
class Check:
    """One line of the doctor's answer."""

    name: str
    status: str  # "ok" | "FAIL" | "warn" | "skip"
    detail: str
    fix: str = ""

    def line(self) -> str:
        fix = f" -> fix: {self.fix}" if self.fix and self.status in ("FAIL", "warn") else ""
        return f"{self.status:<4}  {self.name}: {self.detail}{fix}"


def _cuda() -> tuple[bool, Any]:
    import torch

    return torch.cuda.is_available(), torch


def needs_gpu(cfg: StudyConfig | None) -> list[str]:
    """What in the config needs a CUDA device (empty: nothing)."""
    if cfg is None:
        return []
    why = []
    if cfg.eval.backend == "vllm":
        why.append("eval.backend vllm")
    launcher = cfg.train.launcher or ""
    if any(name in launcher for name in ("fsdp", "deepspeed")):
        why.append("train.launcher with FSDP/DeepSpeed")
    if (cfg.device or "").startswith("cuda"):
        why.append(f"device {cfg.device}")
    return why


def check_device(cfg: StudyConfig | None) -> Check:
    cuda, torch = _cuda()
    if cuda:
        names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
        return Check("device", "ok", f"{torch.cuda.device_count()} CUDA device(s): {', '.join(names)}")
    why = needs_gpu(cfg)
    if why:
        return Check("device", "FAIL", f"no CUDA device, but the config needs one ({'; '.join(why)})",
                     "run on a GPU machine with a CUDA build of torch (scripts/install.sh), or use eval.backend: hf "
                     "and no FSDP/DeepSpeed launcher")
    return Check("device", "ok", f"CPU only (torch {torch.__version__}); this config needs no GPU")


#: Torch threads of the CPU multiply-rate probe: one core's rate, as docs/performance.md states rates.
PROBE_THREADS = 1
#: bf16 counts as the slower only below this share of the fp32 rate (one short probe moves by some percent).
SLOWER_BELOW = 0.8


def cpu_rates(bf16: bool) -> tuple[float | None, float]:
    """One core's measured multiply rates in GFLOP/s, ``(bf16 or None without it, fp32)``; about half a second."""
    import torch

    from raftlab.machine import matmul_gflops

    fp32 = matmul_gflops(torch.float32, repeats=10, threads=PROBE_THREADS)
    return (matmul_gflops(torch.bfloat16, repeats=10, threads=PROBE_THREADS) if bf16 else None), fp32


def check_dtype(cfg: StudyConfig | None) -> Check:
    """bf16 where the hardware has it; on a CPU also one core's measured multiply rates, which tell the kinds of
    CPU apart for a study's time (docs/performance.md has a section per kind)."""
    cuda, torch = _cuda()
    if cuda:
        has = torch.cuda.is_bf16_supported()
        where = "the GPU"
    else:
        from raftlab.machine import cpu_has_fast_bf16

        has, where = cpu_has_fast_bf16(), "the CPU"
    if not has and cfg is not None and cfg.train.bf16 is True:
        return Check("dtype", "FAIL", f"train.bf16 is true but {where} has no (fast) bf16",
                     "a GPU with bf16 (Ampere or newer), or train: {bf16: false}")
    if cuda:
        return Check("dtype", "ok", f"bf16 supported on {where}" if has else f"no bf16 on {where}: models run in "
                     "float32")
    bf16_rate, fp32_rate = cpu_rates(has)
    if bf16_rate is None:
        return Check("dtype", "ok", f"no bf16 on {where}: models run in float32 (one core multiplies "
                     f"{fp32_rate:.0f} GFLOP/s; several times slower than with bf16 hardware: docs/performance.md, "
                     "\"On a CPU without bf16\")")
    detail = (f"bf16 supported on {where} (one core multiplies {bf16_rate:.0f} GFLOP/s in bf16 and {fp32_rate:.0f} "
              "in fp32)")
    if bf16_rate < SLOWER_BELOW * fp32_rate:
        detail += ("; bf16 multiplies slower than fp32 here, so studies take longer than on CPUs whose bf16 is "
                   "faster: docs/performance.md, \"On an Intel Xeon with AVX-512 BF16 but no AMX\"")
    return Check("dtype", "ok", detail)


def _free_memory_gb() -> tuple[float, str]:
    """Free memory of the first GPU, else of the host, in GB, and which."""
    cuda, torch = _cuda()
    if cuda:
        free, _ = torch.cuda.mem_get_info(0)
        return free / 1e9, "GPU 0"
    pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else 0
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e9, "host"


def _launcher_processes(cfg: StudyConfig) -> int:
    """Processes of the training launcher (accelerate's ``num_processes``, over all machines; 1 without one)."""
    import shlex

    import yaml

    words = shlex.split(cfg.train.launcher or "")
    if "--config_file" not in words or words.index("--config_file") + 1 >= len(words):
        return 1
    path = Path(words[words.index("--config_file") + 1])
    try:
        conf = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return 1
    return max(1, int(conf.get("num_processes") or 1))


def check_memory(cfg: StudyConfig | None, params: float | None) -> Check:
    if cfg is None:
        return Check("memory", "skip", "no config: no student to size")
    if params is None:
        return Check("memory", "skip", f"the size of {cfg.model!r} is unknown here (not on this machine, no size "
                                       "in its name)")
    need = params * 2 * SERVE_OVERHEAD / 1e9
    what = f"serving {params / 1e9:.3g}B parameters in bf16"
    if not cfg.train.lora:
        procs = _launcher_processes(cfg)
        train = params * TRAIN_BYTES_PER_PARAM / procs / 1e9
        if train > need:
            need, what = train, (f"full finetuning of {params / 1e9:.3g}B parameters over {procs} process(es) "
                                 "(weights, gradients and Adam's moments; activations not counted)")
    free, where = _free_memory_gb()
    fix = "more or larger GPUs (the launcher's num_processes), LoRA (train: {lora: true}), or a smaller model"
    if where == "host":  # CPU workers share the host's memory: stages side by side add up
        from raftlab.study.executor import effective_workers

        workers = effective_workers(cfg.executor)
        if workers > 1:
            need, what = need * workers, f"{what}, {workers} stages at a time"
            fix = "executor: {workers: 1} (one stage at a time), LoRA (train: {lora: true}), or a smaller model"
    if free < need:
        return Check("memory", "FAIL", f"{what} needs about {need:.1f} GB per device; {where} has {free:.1f} GB free",
                     fix)
    return Check("memory", "ok", f"{what} needs about {need:.1f} GB per device; {where} has {free:.1f} GB free")


def _version(package: str) -> str | None:
    if importlib.util.find_spec(package) is None:
        return None
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown version"


def check_packages(cfg: StudyConfig | None) -> list[Check]:
    """vLLM and accelerate: installed (with versions), required only when the config uses them."""
    uses_vllm = cfg is not None and (cfg.eval.backend == "vllm" or any(
        (spec or "").startswith("vllm:") for spec in (cfg.teacher.backend, cfg.prompting.backend)))
    uses_accelerate = cfg is not None and (cfg.train.launcher or "").startswith("accelerate")
    out = []
    for package, used, why, fix in (
            ("vllm", uses_vllm, "eval.backend vllm", "pip install -e '.[vllm]' (with your CUDA build of torch)"),
            ("accelerate", uses_accelerate, "train.launcher accelerate", "pip install accelerate")):
        version = _version(package)
        if version is not None:
            out.append(Check(package, "ok", f"{package} {version}"))
        elif used:
            out.append(Check(package, "FAIL", f"not installed, but the config uses it ({why})", fix))
        else:
            out.append(Check(package, "skip", "not installed; this config does not use it"))
    return out


def _scrub(text: str) -> str:
    """A message with any API key in the environment replaced by ``***``."""
    for name in ("RAFTLAB_API_KEY", "OPENAI_API_KEY"):
        key = os.environ.get(name)
        if key and len(key) >= 4:
            text = text.replace(key, "***")
    return text


def check_teacher(cfg: StudyConfig | None, timeout: float = 20.0) -> Check:
    """One one-token request to an OpenAI-compatible teacher: reachable, key accepted, model served."""
    if cfg is None:
        return Check("teacher", "skip", "no config")
    spec = cfg.teacher.backend
    if spec == "oracle":
        return Check("teacher", "skip", "the oracle teacher needs no endpoint")
    if not spec.startswith("openai:"):
        return Check("teacher", "skip", f"{spec} runs locally (checked as a model and packages)")
    from raftlab.backends import get_backend
    from raftlab.backends.base import SamplingParams
    from raftlab.backends.openai_backend import BackendRequestError

    options = {**cfg.teacher.backend_options, "max_retries": 0, "timeout": timeout, "on_error": "raise"}
    try:
        backend = get_backend(spec, options)
        backend.generate(["Reply with OK."], SamplingParams(n=1, max_new_tokens=1, temperature=0.0, seed=None))
    except ValueError as exc:  # no key
        return Check("teacher", "FAIL", _scrub(str(exc)), "export OPENAI_API_KEY=... (never put it in the config)")
    except BackendRequestError as exc:
        said = _scrub(str(exc))
        if "HTTP 401" in said or "HTTP 403" in said:
            return Check("teacher", "FAIL", f"the endpoint refused the key: {said}",
                         "set OPENAI_API_KEY (or RAFTLAB_API_KEY) to a valid key for this endpoint")
        if "HTTP 404" in said:
            return Check("teacher", "FAIL", f"the endpoint does not serve this model: {said}",
                         "check the model name and the URL (…/v1) in teacher.backend")
        return Check("teacher", "FAIL", f"the endpoint did not answer: {said}",
                     "check the URL in teacher.backend and that the server is up and reachable from here")
    except Exception as exc:  # noqa: BLE001 - anything else the client raises: one line
        return Check("teacher", "FAIL", f"{type(exc).__name__}: {_scrub(str(exc))}",
                     "check teacher.backend and teacher.backend_options")
    url = getattr(backend, "base_url", None) or "the default OpenAI URL"
    return Check("teacher", "ok", f"{backend.model_name} at {url} answered; the key was accepted")


def check_data(cfg: StudyConfig | None) -> list[Check]:
    """Each task's data: registered and its train and test splits loadable from local files."""
    if cfg is None:
        return [Check("data", "skip", "no config")]
    from raftlab.tasks import get_task

    out = []
    for spec in cfg.tasks:
        name = f"data {spec.name}"
        try:
            task = get_task(spec.name)
        except KeyError:
            out.append(Check(name, "FAIL", "no such task", "raftlab tasks list shows the known tasks"))
            continue
        try:
            train = task.load("train", data_dir=spec.data_dir, limit=spec.train_limit, seed=cfg.seed)
            test = task.load("test", data_dir=spec.data_dir, limit=spec.test_limit, seed=cfg.seed)
        except Exception as exc:  # noqa: BLE001 - a missing folder, a damaged file: the loader's own message
            said = " ".join(str(exc).split()) or type(exc).__name__
            out.append(Check(name, "FAIL", said.split(". ")[0],
                             "set RAFTLAB_DATA_DIR to your datasets folder (docs/study.md), or set the task's "
                             "data_dir"))
            continue
        out.append(Check(name, "ok", f"{len(train)} train, {len(test)} test examples"))
    return out


def check_model(cfg: StudyConfig | None) -> Check:
    """The student resolves without a download: a built-in, a local folder, or a hub id in the local cache."""
    if cfg is None:
        return Check("model", "skip", "no config")
    from raftlab.models.loading import SMOLLM2_NAMES, check_model_spec
    from raftlab.models.tiny import TINY_VARIANTS
    from raftlab.study.student_size import local_model_dir

    try:
        check_model_spec(cfg.model)
    except (ValueError, FileNotFoundError) as exc:
        return Check("model", "FAIL", str(exc), "a local model folder, a cached hub id, or unset HF_HUB_OFFLINE "
                                               "to download it")
    if cfg.model in SMOLLM2_NAMES or cfg.model in TINY_VARIANTS:
        return Check("model", "ok", f"{cfg.model} is built in (built on first use)")
    folder = local_model_dir(cfg.model)
    if folder is not None:
        if not (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file():
            return Check("model", "FAIL", f"{folder} has no config.json", "point model at a model folder")
        return Check("model", "ok", f"{cfg.model} is on this machine ({folder})")
    return Check("model", "warn", f"{cfg.model} is not on this machine: the study would download it",
                 f"huggingface-cli download {cfg.model} (gated models need HF_TOKEN) before going offline")


def _free_disk_gb(run_dir: Path) -> float:
    """Free space where ``run_dir`` is or would be created."""
    path = run_dir.resolve()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free / 1e9


def check_disk(cfg: StudyConfig | None, run_dir: Path, need_gb: float | None) -> Check:
    if cfg is None:
        return Check("disk", "skip", "no config: nothing to size")
    free = _free_disk_gb(run_dir)
    if need_gb is None:
        return Check("disk", "skip", f"{free:.1f} GB free at {run_dir}; the study's size is unknown (model size)")
    if free < need_gb:
        return Check("disk", "FAIL", f"the study needs about {need_gb:,.1f} GB (raftlab study --plan), {run_dir} has "
                                     f"{free:,.1f} GB free", "--out on a larger disk, or LoRA (smaller copies)")
    return Check("disk", "ok", f"about {need_gb:,.1f} GB needed, {free:,.1f} GB free at {run_dir}")


def study_needs(cfg: StudyConfig, run_dir: Path) -> tuple[float | None, float | None]:
    """``(student parameters, disk GB)`` of a study, from its plan's estimate (nothing created)."""
    from raftlab.study.estimate import plan_estimate
    from raftlab.study.stages import StudySteps, plan

    stages = [{"stage": s.name, "kind": s.kind} for s in plan(cfg, StudySteps.real(), run_dir)]
    est = plan_estimate(cfg, stages)
    from raftlab.study.student_size import model_params

    return model_params(cfg.model)[0], est["disk_gb"]["total"]


def run_checks(cfg: StudyConfig | None, run_dir: Path) -> list[Check]:
    """Every check, in the order a study meets them."""
    params, disk = study_needs(cfg, run_dir) if cfg is not None else (None, None)
    return [check_device(cfg), check_dtype(cfg), check_memory(cfg, params), *check_packages(cfg),
            check_teacher(cfg), *check_data(cfg), check_model(cfg), check_disk(cfg, run_dir, disk)]


def passed(checks: list[Check]) -> bool:
    """Whether every required check passed (``warn`` and ``skip`` do not fail)."""
    return all(c.status != "FAIL" for c in checks)
