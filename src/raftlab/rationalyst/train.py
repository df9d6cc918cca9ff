"""Train the rationale generator: input = preceding text, target = rationale (loss on the target only)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from raftlab.rationalyst.extract import Triple
from raftlab.rationalyst.pipeline import generator_prompt, generator_target


def pair_features(tokenizer, triple: Triple, max_length: int = 512) -> dict[str, list[int]]:
    """input_ids/labels of one (preceding text -> rationale) pair, loss on the rationale (+ EOS) only.

    Reuses the training package's exact-boundary encoder (left-truncates the prompt, never the target)."""
    from raftlab.training.features import encode

    return encode(tokenizer, generator_prompt(triple.preceding), generator_target(triple.rationale), max_length)


def train_generator(model: str, triples: Sequence[Triple], out_dir: str | Path, *, epochs: float = 3.0,
                    lr: float = 1e-4, batch_size: int = 8, lora: bool = True, seed: int = 0,
                    max_steps: int = -1, max_length: int = 512, progress: bool = True,
                    name: str = "generator") -> Path:
    """Finetune ``model`` (a raftlab model spec) into a rationale generator saved in ``out_dir/name`` (``generator``;
    the filter ablation trains on every extracted rationale into ``generator-unfiltered``).

    Uses the training package's trainer: batches grouped by length and LM-head logits only at rationale tokens
    (the same loss as the stock Trainer, less padding and no full-vocabulary logits at prompt positions)."""
    from datasets import Dataset
    from transformers import TrainingArguments

    from raftlab.models import load_model, resolve_model_path
    from raftlab.training.collate import PadCollator
    from raftlab.training.trainer import raft_trainer_cls, sampling_strategy, with_lengths

    if not triples:
        raise ValueError("no rationales to train on: run `raftlab rationalyst filter` first (or none were kept)")
    out = Path(out_dir)
    net, tok = load_model(model, dtype="float32")  # trained: fp32 weights
    net.train()
    if lora:
        from peft import LoraConfig, get_peft_model

        net = get_peft_model(net, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM",
                                             target_modules="all-linear"))
        net.peft_config["default"].base_model_name_or_path = resolve_model_path(model)
    rows = with_lengths([pair_features(tok, t, max_length) for t in triples])
    ds = Dataset.from_list(rows)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token

    args = TrainingArguments(output_dir=str(out / "checkpoints"), num_train_epochs=epochs, max_steps=max_steps,
                             learning_rate=lr, per_device_train_batch_size=batch_size, lr_scheduler_type="cosine",
                             warmup_steps=0.03, seed=seed, logging_steps=10, save_strategy="no", report_to=[],
                             remove_unused_columns=False, disable_tqdm=not progress, length_column_name="length",
                             train_sampling_strategy=sampling_strategy(len(rows), batch_size))
    raft_trainer_cls()(model=net, args=args, train_dataset=ds, data_collator=PadCollator(tok.pad_token_id)).train()
    net.save_pretrained(out / name)
    tok.save_pretrained(out / name)
    return out / name
