"""Finetuning: label-only (FT) vs rationale-augmented (RAFT), blank rationales, and the Reason / Explain / Mix /
Align objectives; LoRA or full; multi-task mixtures; `accelerate launch` for many GPUs."""

from raftlab.training.collate import PackCollator, PadCollator
from raftlab.training.config import PAPER_PROFILE, TrainConfig, TrainSettings
from raftlab.training.data import build_mixture, load_examples, tokenize_examples
from raftlab.training.features import IGNORE, OBJECTIVES, build_features, encode, views
from raftlab.training.trainer import prepare, train

# The <Think_i> tokens of blank rationales are raftlab.rationales' (add_think_tokens, think_tokens).
__all__ = [
    "IGNORE", "OBJECTIVES", "PAPER_PROFILE", "PackCollator", "PadCollator", "TrainConfig", "TrainSettings",
    "build_features", "build_mixture", "encode", "load_examples", "prepare", "tokenize_examples", "train", "views",
]
