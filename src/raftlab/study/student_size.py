"""The student as the estimate sees it, read without building or downloading anything: its parameter count (from
a local ``config.json`` or the size in its name) and a token counter (its tokenizer when on this machine, else
words x 1.3)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

#: Tokens per word when no tokenizer is at hand.
TOKENS_PER_WORD = 1.3

TokenCounter = Callable[[Sequence[str]], list[int]]


_SIZE_IN_NAME = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)([bm])(?![a-z])", re.IGNORECASE)


def params_from_config(config: dict[str, Any]) -> float | None:
    """Parameters of a decoder-only transformer from its ``config.json`` (Llama-like layout)."""
    try:
        h, layers, vocab = config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]
    except KeyError:
        return None
    inter = config.get("intermediate_size", 4 * h)
    heads = config.get("num_attention_heads", 1)
    kv = config.get("num_key_value_heads", heads) * (h // max(heads, 1))
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * inter
    embeddings = vocab * h * (1 if config.get("tie_word_embeddings", False) else 2)
    return float(layers * per_layer + embeddings)


def params_from_name(spec: str) -> float | None:
    """Parameters from a size in the model's name (``Llama-2-7b-hf`` -> 7e9, ``SmolLM2-135M`` -> 1.35e8)."""
    found = _SIZE_IN_NAME.findall(spec.rsplit("/", 1)[-1])
    if not found:
        return None
    number, unit = found[-1]
    return float(number) * (1e9 if unit.lower() == "b" else 1e6)


def local_model_dir(spec: str) -> Path | None:
    """The folder of a model spec if it is already on this machine (built-in cache, a directory, the Hugging
    Face cache); never builds or downloads."""
    import os

    from raftlab.models.loading import SMOLLM2_NAMES
    from raftlab.models.tiny import TINY_VARIANTS, TINY_VERSION

    cache = Path(os.environ.get("RAFTLAB_CACHE", Path.home() / ".cache" / "raftlab")) / "models"
    if spec in SMOLLM2_NAMES:
        folder = cache / "smollm2-135m-instruct"
    elif spec in TINY_VARIANTS:
        folder = cache / f"{spec}-v{TINY_VERSION}"
    elif Path(spec).expanduser().is_dir():
        return Path(spec).expanduser()
    else:
        try:
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(spec, "config.json")
        except Exception:  # noqa: BLE001 - not a repo id, or no cache: not here
            return None
        return Path(found).parent if isinstance(found, str) else None
    return folder if (folder / ".complete").exists() else None


def model_params(spec: str) -> tuple[float | None, str]:
    """The student's parameter count and where it came from."""
    import json

    folder = local_model_dir(spec)
    if folder is not None and (folder / "config.json").is_file():
        try:
            n = params_from_config(json.loads((folder / "config.json").read_text()))
        except (OSError, ValueError):
            n = None
        if n:
            return n, f"from {folder / 'config.json'}"
    if spec.split("-")[0] == "smollm2":
        return 1.35e8, "SmolLM2-135M"
    n = params_from_name(spec)
    return n, "from the size in the model's name" if n else "unknown"


def student_token_counter(spec: str) -> tuple[TokenCounter, str]:
    """A function counting tokens with the student's tokenizer when it is on this machine, else words x 1.3;
    and a sentence saying which."""
    folder = local_model_dir(spec)
    if folder is not None and any((folder / f).exists() for f in ("tokenizer.json", "tokenizer_config.json")):
        try:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(str(folder))

            def count(texts: Sequence[str]) -> list[int]:
                return [len(ids) for ids in tok(list(texts), add_special_tokens=False)["input_ids"]]

            return count, f"token counts with the student's tokenizer ({folder})"
        except Exception:  # noqa: BLE001 - a tokenizer that does not load: fall back to words
            pass

    def words(texts: Sequence[str]) -> list[int]:
        return [round(len(t.split()) * TOKENS_PER_WORD) for t in texts]

    return words, (f"token counts are words x {TOKENS_PER_WORD}: the tokenizer of {spec!r} is not on this "
                   "machine (the teacher's own tokenizer may differ either way)")
