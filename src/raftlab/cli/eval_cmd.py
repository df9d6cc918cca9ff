"""``raftlab eval``: evaluate a model on a task (self-consistency by default)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from raftlab.backends.sampling_knobs import EVAL_DEFAULTS
from raftlab.cli.errors import error_line
from raftlab.cli.options import backend_options_flag, knob_option

#: Sequences (questions x samples) per generation batch when --batch-size is not given.
ROWS_PER_BATCH = 40
#: The generation budget when neither --max-new-tokens nor a raftlab-trained model's own need gives one.
DEFAULT_MAX_NEW_TOKENS = EVAL_DEFAULTS.max_new_tokens


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_cmd(
        model: str = typer.Option(..., "--model", "-m", help="model spec: smollm2, tiny, a dir, a hub id; or "
                                  "backend:model (hf:..., vllm:..., openai:NAME@URL)"),
        backend_kind: str = typer.Option(None, "--backend", "-b", help="hf | vllm | openai (default: the model "
                                         "spec's prefix, else hf); with openai, --model NAME[@BASE_URL]"),
        api: str = typer.Option("chat", help="openai backend: chat | completions requests"),
        task: str = typer.Option(..., "--task", "-t", help="task name (see `raftlab tasks`)"),
        mode: str = typer.Option("sc", help="sc | cot | direct | direct_prob"),
        prompt_mode: str = typer.Option(None, help="cot | direct prompt (default: cot for sc/cot, direct otherwise)"),
        k: int = typer.Option(10, help="self-consistency samples"),
        temperature: float = knob_option("temperature"),
        top_p: float = knob_option("top_p"),
        max_new_tokens: int = knob_option("max_new_tokens", None, help="generation budget (default: what a "
                                          "raftlab-trained model's training targets need, else "
                                          f"{DEFAULT_MAX_NEW_TOKENS}); a smaller value is warned about"),
        split: str = typer.Option("test"),
        limit: int = typer.Option(None, help="evaluate a seeded random subset of this size"),
        data: Path = typer.Option(None, help="a JSONL file of Examples instead of the task's own split"),
        data_dir: str = typer.Option(None, help="dataset folder (default: RAFTLAB_DATA_DIR or ../shared/datasets)"),
        batch_size: int | None = typer.Option(None, min=1, help="questions decoding at once, the next joining as "
                                              "their samples finish (default: 40 sequences per forward, i.e. 40 // "
                                              "k questions with --mode sc, 40 otherwise); records are written "
                                              "every 64 questions or batch, the larger"),
        seed: int = knob_option("seed", help="seed of the sampling and of --limit's subset"),
        out: Path = typer.Option(..., "--out", "-o", help="output dir (records.jsonl, settings.json, metrics.json)"),
        backend_option: list[str] = backend_options_flag(),
    ) -> None:
        """Evaluate MODEL on TASK; writes per-question records and metrics, resumes after an interrupt."""
        from raftlab.backends import BACKENDS, get_backend, parse_backend_options
        from raftlab.inference import QUESTIONS_PER_CALL, SettingsMismatch, evaluate
        from raftlab.tasks import get_task, load_jsonl

        t = get_task(task)
        examples = load_jsonl(data, t) if data else t.load(split, data_dir=data_dir, limit=limit, seed=seed)
        if data and limit:
            examples = examples[:limit]
        if backend_kind is not None:
            if backend_kind not in BACKENDS:
                typer.echo(f"error: --backend must be one of {', '.join(BACKENDS)}, not {backend_kind!r}", err=True)
                raise typer.Exit(2)
            spec = f"{backend_kind}:{model}"
        else:
            spec = model if model.split(":", 1)[0] in BACKENDS else f"hf:{model}"
        if api not in ("chat", "completions"):
            typer.echo(f"error: --api must be chat or completions, not {api!r}", err=True)
            raise typer.Exit(2)
        if batch_size is None:
            batch_size = max(1, ROWS_PER_BATCH // (max(1, k) if mode == "sc" else 1))
        options = parse_backend_options(backend_option)
        if spec.startswith("openai:"):
            backend = get_backend(spec, options, api=api)
        elif spec.startswith("hf:"):  # one forward holds a whole batch of questions with their samples
            backend = get_backend(spec, options, batch_size=batch_size)
        else:
            backend = get_backend(spec, options)
        max_new_tokens = _budget(spec, t, mode, prompt_mode, max_new_tokens, out)
        try:
            per_call = batch_size if mode == "direct_prob" else max(batch_size, QUESTIONS_PER_CALL)
            metrics = evaluate(backend, t, examples, mode=mode, k=k, temperature=temperature, top_p=top_p,
                               max_new_tokens=max_new_tokens, seed=seed, out_dir=out, prompt_mode=prompt_mode,
                               batch_size=per_call)  # as a study's eval: the backend decodes batch_size at once
        except SettingsMismatch as exc:
            typer.echo(error_line(exc), err=True)
            raise typer.Exit(2) from exc
        typer.echo(json.dumps(metrics, indent=2, default=str))


def _budget(spec: str, task, mode: str, prompt_mode: str | None, requested: int | None, out: Path) -> int:
    """``requested``, else the model's own need (:func:`raftlab.training.budget.budget_for_model`), else
    :data:`DEFAULT_MAX_NEW_TOKENS` (see :func:`raftlab.training.budget.settle_budget`)."""
    from raftlab.backends import parse_spec
    from raftlab.inference.evaluate import resolved_prompt_mode
    from raftlab.training.budget import budget_for_model, settle_budget

    kind, model, _ = parse_spec(spec)
    budget = budget_for_model(model, task, resolved_prompt_mode(mode, prompt_mode)) if kind != "openai" else None
    if budget is None:
        return requested or DEFAULT_MAX_NEW_TOKENS
    chosen = settle_budget(requested, budget, task.name, out)
    if requested is None:
        typer.echo(f"generation budget: {chosen} new tokens (99% of the training targets take up to "
                   f"{budget.quantile_tokens})", err=True)
    return chosen
