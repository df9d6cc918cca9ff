"""Finetuning with transformers' Trainer: label-only (FT), rationale-augmented (RAFT) and the NLU objectives."""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raftlab.corrupt import loading, read_json
from raftlab.rationales.blank import add_think_tokens
from raftlab.machine import describe_machine
from raftlab.schema import Example
from raftlab.storage import settings_diff, write_json
from raftlab.training import early_stopping
from raftlab.training.attention import attention_for_cpu_training
from raftlab.training.collate import PackCollator, PadCollator
from raftlab.training.config import LATER_FIELDS, PAPER_PROFILE, TrainConfig
from raftlab.training.data import (
    build_mixture, load_examples, mean_rationale_tokens, needed_think_tokens, polarity_weights, tokenize_examples,
)


logger = logging.getLogger("raftlab.training")


def with_lengths(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with the ``length`` column the length-grouped sampler sorts by (tokens of every view)."""
    for r in rows:
        r["length"] = len(r["input_ids"]) + len(r.get("r_input_ids", []))
    return rows


def sampling_strategy(n_rows: int, batch_size: int, group_by_length: bool = True) -> str:
    """Trainer's ``train_sampling_strategy``: grouped by length when there is more than one batch to group."""
    return "group_by_length" if group_by_length and n_rows > batch_size else "random"


def raft_trainer_cls():
    from transformers import Trainer

    from raftlab.training import shared_prefix as prefix_sharing
    from raftlab.training.fused_loss import supports_fused_loss, use_fused_loss
    from raftlab.training.loss import model_inputs, supports_target_logits, target_inputs
    from raftlab.training.sampler import GroupedByLengthSampler

    class RaftTrainer(Trainer):
        """Trainer with length-grouped sampling that also groups small datasets (``sampler.py``), logits computed
        only at target positions (``loss.py``; ``target_logits=False`` gives the stock full-vocabulary forward),
        the tokens all rows of a batch start with computed once (``shared_prefix.py``), the LM head and the loss
        fused over the target positions of a training step (``fused_loss.py``), and an ``eval_loss`` that is the
        training objective over all dev target tokens (the stock one averages batch means)."""

        #: (view prefix, weight) of the loss: the batch itself (align adds its rationale view)
        loss_views: tuple[tuple[str, float], ...] = (("", 1.0),)

        def __init__(self, *args: Any, target_logits: bool = True, shared_prefix: bool = True,
                     fused_loss: bool = True, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.target_logits = bool(target_logits and supports_target_logits(self.model))
            self.shared_prefix = bool(shared_prefix and self.target_logits and self.args.world_size == 1
                                      and not self.args.gradient_checkpointing
                                      and not (self.is_fsdp_enabled or self.is_deepspeed_enabled)
                                      and prefix_sharing.supports_shared_prefix(self.model))
            # measured on CPUs only; FSDP, ZeRO-3 and tensor parallelism gather or shard the head's weight around
            # the head's own forward, which the fused loss does not run; DataParallel replicas would share it
            self.fused_loss = bool(fused_loss and self.target_logits and supports_fused_loss(self.model)
                                   and self.args.device.type == "cpu" and not self.args.fp16
                                   and not (self.is_fsdp_enabled or self.is_deepspeed_enabled)
                                   and self.args.n_gpu <= 1 and getattr(self, "get_tp_size", lambda: 1)() == 1)
            use_fused_loss(self.model, self.fused_loss)
            self.compute_metrics = self.dev_metrics

        def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
            """Per dev row and view: summed target-token cross-entropy and target count (``dev_metrics`` divides
            the totals, after transformers gathers them over processes)."""
            import torch

            inputs = self._prepare_inputs(inputs)
            with torch.no_grad(), self.compute_loss_context_manager():
                parts = [early_stopping.token_losses(model, inputs, prefix, self.target_logits)
                         for prefix, _ in self.loss_views]
            return None, torch.stack([s for s, _ in parts], -1), torch.stack([c for _, c in parts], -1)

        def dev_metrics(self, prediction) -> dict[str, float]:
            weights = [w for _, w in self.loss_views]
            return {"loss": early_stopping.dev_loss(prediction.predictions, prediction.label_ids, weights)}

        def _issue_warnings_after_load(self, load_result):
            """Loading the best checkpoint: no warning for a tied output layer missing from it (it shares the
            input embeddings' tensor, which was loaded)."""
            missing = early_stopping.untied_missing(self.model, load_result.missing_keys)
            super()._issue_warnings_after_load(load_result._replace(missing_keys=missing))

        def _get_train_sampler(self, train_dataset=None):
            ds = train_dataset if train_dataset is not None else self.train_dataset
            if self.args.train_sampling_strategy == "group_by_length" and "length" in ds.column_names:
                batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
                return GroupedByLengthSampler(ds["length"], batch, seed=self.args.seed)
            return super()._get_train_sampler(train_dataset)

        def view_inputs(self, inputs: dict[str, Any], prefix: str = "") -> dict[str, Any]:
            """Model kwargs (with labels) of one view: ``""`` (the batch itself) or ``"r_"`` (align's rationale
            view)."""
            if self.target_logits:
                return target_inputs(inputs, prefix)
            return {**model_inputs(inputs, prefix), "labels": inputs[f"{prefix}labels"]}

        def forward_inputs(self, model, inputs: dict[str, Any], prefix: str = "") -> dict[str, Any]:
            """:meth:`view_inputs` for a training forward: where the rows share a prefix, it has been run once
            and the returned kwargs continue its cache over the rest of the rows."""
            kwargs = self.view_inputs(inputs, prefix)
            length = prefix_sharing.shared_prefix_length(kwargs) if self.shared_prefix else 0
            if not length:
                return kwargs
            with self.accelerator.autocast():  # the decoder is called past the model's own autocast wrapper
                cache = prefix_sharing.prefix_pass(model, kwargs, length)
            return prefix_sharing.suffix_inputs(model, kwargs, length, cache)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            return super().compute_loss(model, self.forward_inputs(model, inputs), return_outputs, num_items_in_batch)

    return RaftTrainer


def _align_trainer_cls():
    class AlignTrainer(raft_trainer_cls()):
        """Align: loss = λ·CE(label view) + (1−λ)·CE(rationale view) of the same examples, in the same batch.

        Each CE is the mean over that view's target tokens (the model's own ``labels`` loss)."""

        def __init__(self, *args: Any, align_lambda: float = 0.5, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.align_lambda = align_lambda
            self.loss_views = (("", align_lambda), ("r_", 1 - align_lambda))
            # compute_loss returns per-batch means, not sums over num_items_in_batch: let Trainer divide by the
            # gradient-accumulation steps (it skips that when it believes the model normalised the loss)
            self.model_accepts_loss_kwargs = False

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            label_out = model(**self.forward_inputs(model, inputs, ""))
            rat_out = model(**self.forward_inputs(model, inputs, "r_"))
            loss = self.align_lambda * label_out.loss + (1 - self.align_lambda) * rat_out.loss
            return (loss, {"label": label_out, "rationale": rat_out}) if return_outputs else loss

    return AlignTrainer


def _token_embedding_modules(model: Any, token_ids: list[int]) -> dict[str, list[int]]:
    """LoRA ``trainable_token_indices`` for new tokens: their input-embedding rows and, for models with an untied
    output layer, their ``lm_head`` rows too (the blank objective predicts the think tokens). Tied layers share
    the rows (peft ties them)."""
    names = {id(m): n for n, m in model.named_modules()}
    targets = {names[id(model.get_input_embeddings())]: token_ids}
    head = model.get_output_embeddings()
    if head is not None and id(head) in names:
        targets[names[id(head)]] = token_ids
    return targets


def base_dtype_for(config: TrainConfig) -> str:
    """The dtype the model's weights load in: fp32 master weights (bf16, where used, comes from autocast), except
    LoRA under bf16, whose frozen base loads in bf16 (it is never updated, so nothing is lost to rounding in the
    optimizer) while the adapters stay fp32 (peft's default)."""
    return "bfloat16" if config.lora and use_bf16(config) else "float32"


def split_examples(config: TrainConfig) -> tuple[list[Example], list[Example]]:
    """The training examples (a mixture when asked) and the dev examples held out of them (``dev_size``; carved
    before the mixture is drawn, so no dev example is trained on)."""
    examples = load_examples(config.data_paths(), config.objective, config.data_examples())
    examples, dev = early_stopping.carve_dev(examples, config.dev_size, config.seed)
    if config.mixture:
        weights = polarity_weights(config.mixture, config.task_polarity or {}, config.mixture_polarity)
        examples = build_mixture(examples, weights, config.mixture_size, config.seed)
    return examples, dev


@dataclass
class Prepared:
    """What training starts from: the model, its tokenizer, the tokenized training and dev rows, and how many
    distinct examples each came from."""

    model: Any
    tok: Any
    rows: list[dict[str, Any]]
    dev_rows: list[dict[str, Any]]
    train_examples: int
    dev_examples: int


def prepare(config: TrainConfig, base_dtype: str | None = None, cpu_attention: bool = True):
    """Model (with LoRA if asked), tokenizer and tokenized training rows (see :func:`prepare_split`)."""
    p = prepare_split(config, base_dtype, cpu_attention)
    return p.model, p.tok, p.rows


def prepare_split(config: TrainConfig, base_dtype: str | None = None, cpu_attention: bool = True) -> Prepared:
    """Model (with LoRA if asked), tokenizer, tokenized training rows and dev rows. ``base_dtype`` overrides
    :func:`base_dtype_for`; ``cpu_attention=False`` keeps the model's own attention on a CPU (benchmarks use both
    to time the stock recipe)."""
    import torch

    from raftlab.models import load_model

    examples, dev = split_examples(config)  # the data first: a bad file is reported before the model loads
    model, tok = load_model(config.model, dtype=base_dtype or base_dtype_for(config))
    blank = config.blank_length or (mean_rationale_tokens(examples, tok) if config.objective == "blank" else None)
    think_ids: list[int] = []
    n_think = needed_think_tokens([*examples, *dev], config.objective, blank)
    if n_think:
        think_ids = add_think_tokens(tok, n_think, model)
    rows = tokenize_examples(examples, tok, config.objective, config.max_length, config.task, blank)
    dev_rows = tokenize_examples(dev, tok, config.objective, config.max_length, config.task, blank)
    model.train()
    if config.lora:
        from peft import LoraConfig, get_peft_model

        from raftlab.models import resolve_model_path

        alpha = PAPER_PROFILE["lora_alpha"] * config.lora_r / PAPER_PROFILE["lora_r"]  # keep alpha/r fixed
        lora = LoraConfig(r=config.lora_r, lora_alpha=alpha, lora_dropout=config.lora_dropout,
                          task_type="CAUSAL_LM", target_modules=PAPER_PROFILE["lora_target_modules"],
                          trainable_token_indices=_token_embedding_modules(model, think_ids) if think_ids else None)
        model = get_peft_model(model, lora)
        model.peft_config["default"].base_model_name_or_path = resolve_model_path(config.model)
        if next(model.get_base_model().parameters()).dtype != torch.float32:
            # bf16 base under autocast: peft would cast every adapter input to fp32 (the adapters' dtype) and
            # autocast straight back to bf16 for the matmul: two needless copies per adapter per pass
            for module in model.modules():
                if hasattr(module, "cast_input_dtype_enabled"):
                    module.cast_input_dtype_enabled = False
        if not torch.cuda.is_available():  # torch's per-element CPU dropout mask is a large share of a LoRA step
            from raftlab.training.fast_dropout import use_mask_dropout

            use_mask_dropout(model)
    if cpu_attention and not config.pack:  # packed rows keep sdpa's block-diagonal masks
        longest = max((len(r.get(key) or []) for r in rows for key in ("input_ids", "r_input_ids")), default=0)
        attention_for_cpu_training(model, longest, config.batch_size, config.gradient_checkpointing)
    return Prepared(model, tok, rows, dev_rows, len({(e.task, e.id) for e in examples}), len(dev))


def use_bf16(config: TrainConfig) -> bool:
    """Whether training runs in bf16: ``config.bf16`` when set, else where the hardware has bf16 (a GPU that
    supports it, or a CPU with AVX-512-BF16/AMX, as :func:`raftlab.machine.default_dtype_name` decides)."""
    import torch

    if config.bf16 is not None:
        return config.bf16
    if PAPER_PROFILE["bf16"] != "auto":
        return bool(PAPER_PROFILE["bf16"])
    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    from raftlab.machine import default_dtype_name

    return default_dtype_name("cpu") == "bfloat16"  # bf16 hardware, unless RAFTLAB_DTYPE says otherwise


def _checkpointing_argument(enabled: bool) -> dict[str, bool]:
    """transformers >= 5.2x calls it ``activation_checkpointing`` (``gradient_checkpointing`` is deprecated)."""
    import inspect

    from transformers import TrainingArguments

    name = ("activation_checkpointing" if "activation_checkpointing" in inspect.signature(TrainingArguments).parameters
            else "gradient_checkpointing")
    return {name: enabled}


def training_arguments(config: TrainConfig, n_rows: int):
    import torch
    from transformers import TrainingArguments

    check_launcher_fits_host()
    bf16 = use_bf16(config)
    return TrainingArguments(
        output_dir=str(Path(config.out) / "checkpoints"),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        learning_rate=config.lr(),
        lr_scheduler_type=PAPER_PROFILE["scheduler"],
        warmup_steps=PAPER_PROFILE["warmup_ratio"],  # < 1: a ratio of the total steps
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.accumulation(int(os.environ.get("WORLD_SIZE", "1"))),
        **_checkpointing_argument(config.gradient_checkpointing),
        weight_decay=config.weight_decay,
        seed=config.seed,
        data_seed=config.seed,
        bf16=bf16,
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_total_limit=2,  # the best checkpoint is kept besides (load_best_model_at_end)
        **early_stopping.evaluation_arguments(config),
        dataloader_pin_memory=torch.cuda.is_available(),  # pinning needs an accelerator (warns on CPU-only hosts)
        # on a host without CUDA, processes started by torchrun / accelerate launch join one gloo process group
        # (without use_cpu each would train on its own and all would write the same output directory)
        use_cpu=not torch.cuda.is_available(),
        report_to=[],
        remove_unused_columns=False,
        train_sampling_strategy=sampling_strategy(n_rows, config.batch_size, config.group_by_length),
        length_column_name="length",
        disable_tqdm=False,
    )


def _quiet_progress(trainer: Any) -> None:
    """The Trainer's progress bar without its ``{'loss': ...}`` dict printed at every logging step (the losses
    go to the ``raftlab.training`` logger, shown with ``raftlab -v``, and to train_summary.json) and without a
    bar per dev evaluation."""
    from transformers.trainer_callback import ProgressCallback

    class QuietProgress(ProgressCallback):
        def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
            pass  # no second bar for the few batches of a dev evaluation

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                logger.info("step %d: %s", state.global_step, ", ".join(f"{k} {v:.4g}" if isinstance(v, float)
                                                                         else f"{k} {v}" for k, v in logs.items()))

    if any(isinstance(cb, ProgressCallback) for cb in trainer.callback_handler.callbacks):
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(QuietProgress())


def check_launcher_fits_host() -> None:
    """Refuse FSDP and DeepSpeed launches on a host without CUDA (accelerate would silently fall back to plain
    DDP or one process, and DeepSpeed then fails on its batch-size check)."""
    import torch

    if torch.cuda.is_available():
        return
    for env, what in (("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")):
        if os.environ.get(env, "").lower() in ("1", "true", "yes"):
            raise ValueError(f"{what} needs GPUs and this host has no CUDA device. On CPUs, train with plain "
                             "data parallelism: `accelerate launch --multi_gpu --num_processes N -m raftlab.cli.main "
                             "train ...` or `torchrun --nproc_per_node N -m raftlab.cli.main train ...` (gloo); "
                             "docs/scale.md has the GPU recipe for the FSDP and DeepSpeed configs.")


def check_accelerate_config(path: str | Path, config: TrainConfig) -> dict[str, int]:
    """The checks of a multi-process launch that need no GPU, from an ``accelerate`` config file: the world size
    (``num_processes``), the gradient accumulation raftlab will use for it (``global_batch`` / ``grad_accum``), and
    the global batch ``batch_size x grad_accum x world_size``. With DeepSpeed, its ``gradient_accumulation_steps``
    must equal raftlab's (DeepSpeed's own batch-size check fails otherwise). Raises ``ValueError`` naming the
    file and field; returns ``{"world_size", "grad_accum", "global_batch"}``."""
    from accelerate.commands.config.config_args import ClusterConfig

    cfg = ClusterConfig.from_yaml_file(str(path))
    world = int(cfg.num_processes or 1)  # accelerate's num_processes counts every machine's processes
    accum = config.accumulation(world)  # ValueError when global_batch does not divide
    ds = getattr(cfg, "deepspeed_config", None) or {}
    ds_accum = ds.get("gradient_accumulation_steps")
    if str(getattr(cfg, "distributed_type", "")).upper().endswith("DEEPSPEED") and ds_accum not in (None, "auto"):
        if int(ds_accum) != accum:
            raise ValueError(f"{path}: deepspeed_config.gradient_accumulation_steps is {ds_accum}, but this training "
                             f"accumulates {accum} step(s) (batch_size {config.batch_size}, global_batch "
                             f"{config.global_batch}, {world} processes); set it to {accum} or 'auto'")
    return {"world_size": world, "grad_accum": accum, "global_batch": config.batch_size * accum * world}


def _finished(out: Path, config: TrainConfig) -> bool:
    """True when ``out`` holds a finished run of this very config (a resumed run then has nothing to do)."""
    summary = out / "train_summary.json"
    if not summary.is_file():
        return False
    saved = read_json(summary, "delete it to train again, or use another --out")
    done = (saved.get("config") if isinstance(saved, dict) else None) or {}
    done = {**LATER_FIELDS, **done}  # a run recorded before a setting existed used its earlier value
    return settings_diff(done, config.model_dump(mode="json")) in ([], ["resume"])


def run_training(config: TrainConfig):
    """Train and save like :func:`train`; returns ``(out_dir, trainer)`` (the trained model is ``trainer.model``)."""
    from datasets import Dataset
    from transformers import set_seed

    set_seed(config.seed)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    p = prepare_split(config)
    model, tok, rows = p.model, p.tok, p.rows
    dataset = Dataset.from_list(with_lengths(rows))
    args = training_arguments(config, len(rows))
    collator = PackCollator() if config.pack else PadCollator(tok.pad_token_id)
    common = dict(model=model, args=args, train_dataset=dataset, data_collator=collator,
                  eval_dataset=Dataset.from_list(with_lengths(p.dev_rows)) if p.dev_rows else None,
                  callbacks=early_stopping.callbacks(config), target_logits=config.target_logits,
                  shared_prefix=config.shared_prefix)
    if config.objective == "align":
        trainer = _align_trainer_cls()(**common, align_lambda=config.align_lambda)
    else:
        trainer = raft_trainer_cls()(**common)
    _quiet_progress(trainer)
    ckpts = sorted((out / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    resume = ckpts[-1] if config.resume and ckpts else None
    with loading(resume, f"delete {resume} to resume from the checkpoint before it (or train without --resume)"):
        result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    trainer.save_model(str(out))  # gathers FSDP/ZeRO-3 shards; only the main process writes
    if trainer.is_world_process_zero():
        tok.save_pretrained(out)
        epochs = float(trainer.state.epoch or 0.0)
        summary = {"config": config.model_dump(mode="json"), "train_rows": len(rows),
                   "global_step": result.global_step, "train_loss": result.training_loss,
                   # cost: wall time of this process's training (a resumed run: the last part) and the tokens
                   # it processed (rows x epochs trained; targets are the tokens with a loss)
                   "train_seconds": (result.metrics or {}).get("train_runtime"), "epochs_trained": epochs,
                   "trained_tokens": round(epochs * sum(r["length"] for r in rows)),
                   "trained_target_tokens": round(epochs * sum(sum(1 for x in [*r["labels"], *r.get("r_labels", [])]
                                                                   if x != -100) for r in rows)),
                   "machine": describe_machine(str(trainer.args.device)),
                   "precision": {"bf16": bool(trainer.args.bf16), "base_dtype": base_dtype_for(config)},
                   "world_size": trainer.args.world_size,
                   "global_batch": (trainer.args.per_device_train_batch_size * trainer.args.gradient_accumulation_steps
                                    * trainer.args.world_size),
                   "stopping": early_stopping.stopping(trainer.state, config, p.train_examples, p.dev_examples),
                   "log_history": trainer.state.log_history}
        write_json(out / "train_summary.json", summary)
    return out, trainer


def drop_checkpoints(out: Path) -> None:
    """Delete a finished run's resume checkpoints (weights and optimizer state, about three times the model's size
    when every weight trains). A study does so after each training stage: a changed config retrains there anyway,
    whereas ``raftlab train --resume`` may extend a finished run from its last checkpoint."""
    shutil.rmtree(out / "checkpoints", ignore_errors=True)


def train(config: TrainConfig) -> Path:
    """Finetune and save the model (or LoRA adapter) with its tokenizer to ``config.out``; returns that dir.

    With ``resume=True`` training continues from the newest checkpoint in ``out/checkpoints``, and a run whose
    ``train_summary.json`` records this same config is already finished (nothing is retrained).
    """
    if config.resume and _finished(Path(config.out), config):
        return Path(config.out)
    return run_training(config)[0]
