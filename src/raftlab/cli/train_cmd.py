"""``raftlab train``: finetune a model label-only (FT), on rationales (RAFT) or with another objective."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        model: str = typer.Option(..., "--model", "-m", help="smollm2 | tiny | a model dir | a hub id"),
        data: list[Path] = typer.Option(..., "--data", "-d", help="JSONL of Examples or a rationale run dir "
                                        "(repeat for a multi-task mixture)"),
        objective: str = typer.Option("label", help="label | raft | blank | reason | explain | mix | align"),
        out: Path = typer.Option(None, "--out", "-o", help="output directory (required unless --debug-tokens)"),
        task: str = typer.Option(None, help="task name (default: each example's own task)"),
        lora: bool = typer.Option(True, "--lora/--full", help="LoRA adapters (default) or full finetuning"),
        epochs: float = typer.Option(3.0),
        max_steps: int = typer.Option(-1, help="stop after this many optimizer steps (-1: use epochs)"),
        lr: float = typer.Option(None, help="learning rate (default: 5e-6 full, 2e-4 LoRA)"),
        batch_size: int = typer.Option(8),
        grad_accum: int = typer.Option(1),
        max_length: int = typer.Option(1024),
        seed: int = typer.Option(0),
        align_lambda: float = typer.Option(0.5, help="λ in λ·CE(label) + (1−λ)·CE(rationale)"),
        blank_length: int = typer.Option(None, help="think tokens per blank rationale (default: task mean)"),
        mixture: str = typer.Option(None, help="task sampling weights, e.g. 'sst2=1,gsm8k=2'"),
        mixture_size: int = typer.Option(None),
        mixture_polarity: str = typer.Option("full", help="full | positive | negative (tasks by --task-polarity)"),
        task_polarity: str = typer.Option(None, help="sign per task, e.g. 'sst2=-1,gsm8k=1'"),
        pack: bool = typer.Option(False, "--pack/--no-pack", help="one padding-free row per batch (block-diagonal "
                                  "attention; best with flash-attention on a GPU, slower than grouping on a CPU)"),
        target_logits: bool = typer.Option(True, "--target-logits/--full-logits", help="LM-head logits only where "
                                           "a token is trained (same loss, less compute)"),
        resume: bool = typer.Option(False, help="continue from the newest checkpoint in OUT/checkpoints"),
        debug_tokens: int = typer.Option(0, help="print N examples token by token (trained or not) and exit"),
    ) -> None:
        """Finetune MODEL on DATA with OBJECTIVE; loss only on target tokens."""
        from pydantic import ValidationError

        from raftlab.training import TrainConfig

        weights = _pairs(mixture, float, "--mixture") if mixture else None
        signs = _pairs(task_polarity, int, "--task-polarity") if task_polarity else None
        try:
            config = TrainConfig(model=model, data=[str(d) for d in data], objective=objective,
                                 out=str(out or "."), task=task, lora=lora, epochs=epochs, max_steps=max_steps,
                                 learning_rate=lr, batch_size=batch_size, grad_accum=grad_accum,
                                 max_length=max_length, seed=seed, align_lambda=align_lambda,
                                 blank_length=blank_length, mixture=weights, mixture_size=mixture_size,
                                 mixture_polarity=mixture_polarity, task_polarity=signs,
                                 pack=pack, target_logits=target_logits, resume=resume)
        except ValidationError as exc:
            raise typer.BadParameter(str(exc)) from exc
        try:
            if debug_tokens:
                _debug(config, debug_tokens)
                return
            if out is None:
                raise typer.BadParameter("--out is required", param_hint="--out")
            from raftlab.training import train

            typer.echo(f"saved to {train(config)}")
        except (ValueError, FileNotFoundError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc


def _pairs(text: str, cast, option: str) -> dict:
    """``"a=1,b=2"`` -> ``{"a": cast("1"), "b": cast("2")}``."""
    try:
        return {k.strip(): cast(v) for k, v in (p.split("=") for p in text.split(","))}
    except ValueError as exc:
        raise typer.BadParameter("use task=value pairs separated by commas", param_hint=option) from exc


def _debug(config, n: int) -> None:
    from rich.console import Console

    from raftlab.models import load_tokenizer
    from raftlab.training.data import load_examples, mean_rationale_tokens, needed_think_tokens, tokenize_examples
    from raftlab.training.debug import render
    from raftlab.training.features import add_think_tokens

    tok = load_tokenizer(config.model)
    examples = load_examples(config.data_paths(), config.objective)[:n]
    blank = config.blank_length or (mean_rationale_tokens(examples, tok) if config.objective == "blank" else None)
    k = needed_think_tokens(examples, config.objective, blank)
    if k:
        add_think_tokens(tok, None, k)
    console = Console()
    for i, feature in enumerate(tokenize_examples(examples, tok, config.objective, config.max_length, config.task,
                                                  blank)[:n]):
        console.rule(f"example {i} ({config.objective})")
        render(tok, feature, console)
