"""Resolve a model spec to a (model, tokenizer) pair."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from raftlab.corrupt import loading, read_json
from raftlab.models.cache import cache_dir
from raftlab.models.smollm2 import smollm2_dir
from raftlab.models.tiny import TINY_VARIANTS, tiny_model_dir

log = logging.getLogger(__name__)

SPEC_HELP = "'smollm2' (packaged), 'tiny' / 'tiny-nobos' (random init), a local model or LoRA adapter directory, or a hub id"


SMOLLM2_NAMES = ("smollm2", "smollm2-135m", "smollm2-135m-instruct")


def check_model_spec(spec: str) -> None:
    """Raise the error :func:`resolve_model_path` would raise for ``spec``, without building, loading or
    downloading anything (a hub id is accepted unless HF_HUB_OFFLINE is set and it is not cached)."""
    if spec in SMOLLM2_NAMES or spec in TINY_VARIANTS:
        return
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"model path {path} is not a directory; expected {SPEC_HELP}")
        return
    if spec.startswith((".", "/", "~")):
        raise FileNotFoundError(f"model directory {spec} does not exist")
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") and not _in_hub_cache(spec):
        raise ValueError(f"unknown model {spec!r}: not a built-in name, not a local directory, and not in the "
                         f"Hugging Face cache while HF_HUB_OFFLINE is set; expected {SPEC_HELP}")


def resolve_model_path(spec: str) -> str:
    """Map a model spec to a local directory (or leave a hub id unchanged)."""
    check_model_spec(spec)
    if spec in SMOLLM2_NAMES:
        return str(smollm2_dir())
    if spec in TINY_VARIANTS:
        return str(tiny_model_dir(spec))
    path = Path(spec).expanduser()
    if path.exists():
        if path.is_dir() and not any((path / f).exists() for f in (
                "config.json", "adapter_config.json", "tokenizer_config.json")):
            inside = sorted(p.parent.name for p in path.glob("*/*config.json"))
            hint = f" (a model is in {path / inside[0]})" if inside else ""
            raise ValueError(f"{path}: not a model directory: no config.json or adapter_config.json{hint}")
        return str(path)
    return spec  # hub id: resolved by transformers (needs network or a local HF cache)


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import scan_cache_dir

        return any(r.repo_id == repo_id for r in scan_cache_dir().repos)
    except Exception:  # noqa: BLE001 - no cache, or an unreadable one: not cached
        return False


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").exists()


def model_fix(folder: str | Path) -> str:
    """What to do about a damaged file in a model folder, by who made the folder."""
    folder = Path(folder)
    if is_adapter_dir(folder) or (folder / "train_summary.json").exists():
        return ("the trained model is damaged: train it again into a fresh folder (`raftlab train --out`, or a "
                "study in a new run directory)")
    if folder.resolve().is_relative_to(cache_dir().resolve()):
        return f"delete {folder}; raftlab builds it again on next use"
    if "snapshots" in folder.parts and any(p.startswith("models--") for p in folder.parts):
        return "the downloaded copy is damaged: delete it from the Hugging Face cache (`hf cache delete`) and " \
               "download it again"
    return "the model folder is damaged: copy or download it again"


def named_damage(path: str):
    """:func:`raftlab.corrupt.loading` for the model at ``path`` (a folder or a cached hub id): a load that fails
    on a damaged file raises :class:`~raftlab.corrupt.CorruptFile` naming it and :func:`model_fix`."""
    def folder() -> Path | None:
        if Path(path).is_dir():
            return Path(path)
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(path, local_files_only=True))
        except Exception:  # noqa: BLE001 - not a cached hub model: nothing to check
            return None

    return loading(folder, model_fix)


def _torch_dtype(dtype: Any, device: str = "cpu"):
    """The torch dtype for ``dtype``; None/"auto": :func:`raftlab.machine.default_dtype_name` for the device
    (announced once per run)."""
    import torch

    if dtype is None or dtype == "auto":
        from raftlab.machine import default_dtype_name, first_time

        name = default_dtype_name(device)
        if first_time(f"dtype {device} {name}"):
            why = "RAFTLAB_DTYPE" if os.environ.get("RAFTLAB_DTYPE") else (
                "bf16 hardware" if name == "bfloat16" else "no bf16 hardware")
            log.info("models on %s load in %s (%s; RAFTLAB_DTYPE overrides)", device, name, why)
        dtype = name
    if isinstance(dtype, str):
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r} (e.g. float32, bfloat16, float16)")
        return getattr(torch, dtype)
    return dtype


def load_tokenizer(spec: str):
    """Tokenizer of a model spec; for adapters, the adapter's own tokenizer when it saved one."""
    from transformers import AutoTokenizer

    path = resolve_model_path(spec)
    if is_adapter_dir(path) and not (Path(path) / "tokenizer_config.json").exists():
        path = resolve_model_path(_adapter_base(path))
    with named_damage(path):
        tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _adapter_base(path: str | Path) -> str:
    cfg = read_json(Path(path) / "adapter_config.json", model_fix(path))
    base = cfg.get("base_model_name_or_path") if isinstance(cfg, dict) else None
    if not base:
        raise ValueError(f"{path}/adapter_config.json has no base_model_name_or_path")
    return base


def trained_base_dtype(path: str | Path) -> str | None:
    """The dtype an adapter's frozen base was trained in (``train_summary.json``'s ``precision.base_dtype``), or
    None when not recorded (a damaged file is a :class:`~raftlab.corrupt.CorruptFile`). A LoRA adapter learns its
    correction on top of that exact base, so it is evaluated over a base in the same precision."""
    summary = Path(path) / "train_summary.json"
    if not summary.is_file():
        return None
    data = read_json(summary, model_fix(path))
    precision = data.get("precision") if isinstance(data, dict) else None
    dtype = precision.get("base_dtype") if isinstance(precision, dict) else None
    return dtype if dtype in ("float32", "bfloat16", "float16") else None


def load_model(spec: str, dtype: Any = None, device: str = "cpu", merge_adapter: bool = True,
               **from_pretrained: Any):
    """Load ``(model, tokenizer)`` for ``spec`` ({SPEC_HELP}).

    LoRA adapter directories are loaded onto their base model (resizing its embeddings when the adapter's
    tokenizer added tokens, e.g. ``<Think_i>``) and merged unless ``merge_adapter=False``. Without an explicit
    ``dtype`` (or ``RAFTLAB_DTYPE``), an adapter loads in the precision its base was trained in
    (:func:`trained_base_dtype`), other models in :func:`raftlab.machine.default_dtype_name`'s.
    """
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(spec)
    if (dtype is None or dtype == "auto") and not os.environ.get("RAFTLAB_DTYPE") and is_adapter_dir(path):
        dtype = trained_base_dtype(path)  # evaluate an adapter over the base precision it was trained with
    torch_dtype = _torch_dtype(dtype, device)
    tokenizer = load_tokenizer(spec)
    if is_adapter_dir(path):
        from peft import PeftModel

        base_path = resolve_model_path(_adapter_base(path))
        with named_damage(base_path):
            base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch_dtype, **from_pretrained)
        if base.get_input_embeddings().num_embeddings < len(tokenizer):
            base.resize_token_embeddings(len(tokenizer))
        with named_damage(path):
            model = PeftModel.from_pretrained(base, path)
        if merge_adapter:
            model = model.merge_and_unload()
    else:
        with named_damage(path):
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, **from_pretrained)
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.to(device)
    model.eval()
    return model, tokenizer


load_model.__doc__ = load_model.__doc__.format(SPEC_HELP=SPEC_HELP)
