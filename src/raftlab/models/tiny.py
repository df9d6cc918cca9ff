"""Tiny random-init Llama-style models with a locally trained byte-level BPE tokenizer.

They make every pipeline stage testable in seconds on a CPU with no network. Two variants:
``tiny`` (tokenizer prepends a BOS token, like Llama) and ``tiny-nobos`` (no BOS, like SmolLM2/Qwen),
so that loss masking can be checked on both kinds of tokenizer.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path

from raftlab.models.cache import build_lock, cache_dir, is_complete, mark_complete
from raftlab.storage import atomic_directory

TINY_VERSION = "1"
TINY_VARIANTS = {"tiny": True, "tiny-nobos": False}  # name -> prepends BOS
SPECIAL_TOKENS = {"bos": "<s>", "eos": "</s>", "pad": "<pad>", "unk": "<unk>"}

_WORDS = (
    "the a an of to in and or is are was were be it that this with for on as by at from not no yes true false "
    "question answer options let's think step by step so therefore because first then next finally total each "
    "how many much more less left after before has have had gives give takes buys sold apples coins coin flips "
    "flip heads up reverse still person people positive negative neutral entailment contradiction paraphrase "
    "sentence review movie sports business world science technology topic premise hypothesis word context "
    "same different subjective objective plus minus times divided equals number numbers sum difference product"
).split()


def default_corpus(n_lines: int = 3000, seed: int = 0) -> list[str]:
    """A small synthetic English/arithmetic corpus covering the prompt and answer vocabulary."""
    rng = random.Random(seed)
    lines = []
    for i in range(n_lines):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 14))]
        a, b = rng.randint(0, 999), rng.randint(0, 99)
        op = rng.choice("+-*/")
        letter = rng.choice("ABCDE")
        lines.append(
            f"Question: {' '.join(words).capitalize()}? {a} {op} {b} = ? Options: ({letter}) {rng.choice(_WORDS)}\n"
            f"Answer: Let's think step by step. {a} {op} {b} gives {a + b}. The answer is ({letter}). The answer is {a + b}."
        )
    return lines


def train_tokenizer(corpus: Iterable[str], vocab_size: int = 1024, add_bos: bool = True):
    """Train a byte-level BPE tokenizer; returns a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    bos = SPECIAL_TOKENS["bos"]
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=SPECIAL_TOKENS["eos"],
        pad_token=SPECIAL_TOKENS["pad"],
        unk_token=SPECIAL_TOKENS["unk"],
        model_max_length=2048,
    )


def build_tiny_model(
    out_dir: str | Path,
    corpus: Iterable[str] | None = None,
    *,
    add_bos: bool = True,
    vocab_size: int = 1024,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    seed: int = 0,
) -> Path:
    """Write a tiny random-init ``LlamaForCausalLM`` and its tokenizer to ``out_dir``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    tokenizer = train_tokenizer(corpus if corpus is not None else default_corpus(), vocab_size, add_bos)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 3,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=max(1, num_heads // 2),
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def tiny_model_dir(name: str = "tiny") -> Path:
    """Cached directory of a named tiny model (``tiny`` or ``tiny-nobos``), built on first use."""
    if name not in TINY_VARIANTS:
        raise ValueError(f"unknown tiny model {name!r}; choose one of {sorted(TINY_VARIANTS)}")
    out = cache_dir() / "models" / f"{name}-v{TINY_VERSION}"
    if is_complete(out):
        return out
    with build_lock(name):
        if not is_complete(out):
            with atomic_directory(out) as tmp:
                build_tiny_model(tmp, add_bos=TINY_VARIANTS[name])
            mark_complete(out)
    return out
