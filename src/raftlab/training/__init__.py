"""Finetuning: label-only (FT) vs rationale-augmented (RAFT), blank rationales, and the Reason / Explain / Mix /
Align objectives; LoRA or full; multi-task mixtures; `accelerate launch` for many GPUs."""

from raftlab.training.collate import PackCollator, PadCollator
from raftlab.training.config import PAPER_PROFILE, TrainConfig
from raftlab.training.data import build_mixture, load_examples, tokenize_examples
from raftlab.training.features import (
    IGNORE, OBJECTIVES, add_think_tokens, build_features, encode, think_tokens, views,
)
from raftlab.training.trainer import prepare, train

__all__ = [
    "IGNORE", "OBJECTIVES", "PAPER_PROFILE", "PackCollator", "PadCollator", "TrainConfig", "add_think_tokens", "build_features",
    "build_mixture", "encode", "load_examples", "prepare", "think_tokens", "tokenize_examples", "train", "views",
]
