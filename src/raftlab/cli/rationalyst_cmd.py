"""``raftlab rationalyst mine|filter|train|solve``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from raftlab.cli.options import backend_options_flag, knob_option

rationalyst_app = typer.Typer(no_args_is_help=True, help="RATIONALYST: implicit rationales as process supervision.")


def _examples(task: str, split: str, limit: int | None, seed: int, data_dir: str | None):
    from raftlab.tasks import get_task

    t = get_task(task)
    return t, t.load(split, data_dir=data_dir, limit=limit, seed=seed)


def _backend(spec: str, options: list[str] | None = None):
    from raftlab.backends import get_backend, parse_backend_options

    return get_backend(spec if ":" in spec.split("/")[0] else f"hf:{spec}", parse_backend_options(options))


@rationalyst_app.command("mine")
def mine_cmd(
    model: str = typer.Option("smollm2", help="extraction model (backend:model or a model spec), or 'oracle' "
                              "for a rule-based annotator (offline demos): 'oracle:synthetic' (synthetic "
                              "arithmetic, the default for synth_* tasks) or 'oracle:equations' (GSM8K-style "
                              "'a op b = c' sentences, the default otherwise)"),
    task: str = typer.Option("gsm8k", help="task whose training solutions are the unlabeled text"),
    text_file: Path = typer.Option(None, help="mine this unlabeled text instead (.jsonl with 'text', or one "
                                   "document per line); --task is then ignored"),
    split: str = typer.Option("train"),
    limit: int = typer.Option(100, min=1),
    seed: int = typer.Option(0),
    data_dir: str = typer.Option(None),
    max_edit_ratio: float = typer.Option(0.10, min=0.0, max=1.0,
                                         help="drop annotations whose text differs by more than this"),
    prefilter_keep: int = typer.Option(None, min=1, help="mine only the N documents most similar to the target "
                                       "task's questions (the paper's embedding prefilter)"),
    prefilter_task: str = typer.Option("gsm8k", help="target task whose test questions the prefilter compares with"),
    embedder: str = typer.Option("tfidf", help="prefilter embedding: hf:<model dir> (a sentence encoder, e.g. "
                                 "all-MiniLM-L6-v2) or tfidf (offline lexical fallback)"),
    out: Path = typer.Option(..., "--out", "-o", help="run directory (rationalyst.sqlite)"),
) -> None:
    """Insert <BOT>…<EOT> rationales into solutions; keep faithful annotations; store triples."""
    from raftlab.rationalyst import docs_from_examples, docs_from_text_file, mine, open_store

    if text_file is not None:
        try:
            docs = docs_from_text_file(text_file)[:limit]
        except (OSError, ValueError) as e:
            raise typer.BadParameter(str(e), param_hint="--text-file") from None
    else:
        _, examples = _examples(task, split, limit, seed, data_dir)
        docs = docs_from_examples(examples)
        if not docs:
            raise typer.BadParameter(f"no {task} example carries a solution text to mine", param_hint="--task")
    if prefilter_keep is not None:
        from raftlab.rationalyst.prefilter import prefilter

        _, targets = _examples(prefilter_task, "test", 200, seed, data_dir)
        try:
            docs, info = prefilter(docs, [e.question for e in targets], prefilter_keep, embedder)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--embedder") from None
        typer.echo(f"prefilter: {json.dumps(info)}", err=True)
    store = open_store(out)
    if model == "oracle" or model.startswith("oracle:"):
        from raftlab.rationalyst.oracle import OracleAnnotator

        default = "synthetic" if text_file is None and task.startswith("synth_") else "equations"
        try:
            backend = OracleAnnotator(model.partition(":")[2] or default)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--model") from None
    else:
        backend = _backend(model)
    typer.echo(json.dumps(mine(backend, docs, store, max_edit_ratio=max_edit_ratio), indent=2))


def _mined_store(out: Path):
    """The store of a directory where `rationalyst mine` ran (a clear error otherwise, before any model loads)."""
    from raftlab.rationalyst import open_store

    if not (out / "rationalyst.sqlite").is_file():
        raise FileNotFoundError(f"{out / 'rationalyst.sqlite'} does not exist: run `raftlab rationalyst mine "
                                f"--out {out}` first")
    return open_store(out)


@rationalyst_app.command("filter")
def filter_cmd(
    model: str = typer.Option("smollm2", help="scoring model"),
    out: Path = typer.Option(..., "--out", "-o"),
    backend_option: list[str] = backend_options_flag("the scoring model"),
) -> None:
    """Keep a rationale iff it raises the discounted log-probability of the following text."""
    from raftlab.rationalyst import filter_triples

    store = _mined_store(out)
    typer.echo(json.dumps(filter_triples(_backend(model, backend_option), store), indent=2))


@rationalyst_app.command("train")
def train_cmd(
    model: str = typer.Option("smollm2", help="base model of the rationale generator"),
    out: Path = typer.Option(..., "--out", "-o"),
    epochs: float = typer.Option(3.0, min=0.0),
    lr: float = typer.Option(1e-4, min=0.0),
    batch_size: int = typer.Option(8, min=1),
    full: bool = typer.Option(False, help="full finetuning instead of LoRA"),
    max_steps: int = typer.Option(-1, help="stop after this many optimizer steps (-1: run all epochs)"),
    seed: int = typer.Option(0),
    all_rationales: bool = typer.Option(False, "--all-rationales", help="filter ablation: train on every extracted "
                                        "rationale, not only the kept ones (saved as OUT/generator-unfiltered)"),
) -> None:
    """Train the generator (input: preceding text; target: rationale) on the kept rationales."""
    from raftlab.rationalyst import kept_triples, mined_triples, train_generator

    store = _mined_store(out)
    triples = [t for _, t in mined_triples(store)] if all_rationales else kept_triples(store)
    path = train_generator(model, triples, out, epochs=epochs, lr=lr, batch_size=batch_size, lora=not full,
                           max_steps=max_steps, seed=seed, name="generator-unfiltered" if all_rationales
                           else "generator")
    typer.echo(f"generator saved to {path}")


@rationalyst_app.command("solve")
def solve_cmd(
    agent: str = typer.Option("smollm2", help="agent model that proposes reasoning steps"),
    generator: str = typer.Option(None, help="rationale generator (default: OUT/generator)"),
    task: str = typer.Option("gsm8k"),
    split: str = typer.Option("test"),
    limit: int = typer.Option(20, min=1),
    seed: int = typer.Option(0),
    data_dir: str = typer.Option(None),
    methods: str = typer.Option("implicit,explicit,random", help="comma-separated"),
    k: int = typer.Option(3, min=1, help="candidate steps per step"),
    temperature: float = knob_option("temperature", 0.7),
    max_steps: int = typer.Option(15, min=1),
    max_step_tokens: int = typer.Option(64, min=1, help="token budget of one candidate step"),
    max_rationale_tokens: int = typer.Option(48, min=1, help="token budget of one rationale"),
    out: Path = typer.Option(..., "--out", "-o"),
    backend_option: list[str] = backend_options_flag("the agent and the generator"),
) -> None:
    """Decode with rationale supervision vs random candidates; prints and writes accuracies."""
    from raftlab.rationalyst import open_store, paired_comparison, solve, stored_solve_settings

    from raftlab.rationalyst.solve import METHODS

    method_list = [m.strip() for m in methods.split(",") if m.strip()]
    if not method_list or any(m not in METHODS for m in method_list):
        raise typer.BadParameter(f"{methods!r}: choose from {', '.join(METHODS)}", param_hint="--methods")
    t, examples = _examples(task, split, limit, seed, data_dir)
    gen = None
    if any(m != "random" for m in method_list):
        gen = _backend(generator or str(out / "generator"), backend_option)
    store = open_store(out)
    try:
        result = solve(_backend(agent, backend_option), gen, t, examples, store, methods=method_list, k=k,
                       temperature=temperature, max_steps=max_steps, seed=seed, max_step_tokens=max_step_tokens,
                       max_rationale_tokens=max_rationale_tokens)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    settings = stored_solve_settings(store, t.name)
    ids = [ex.id for ex in examples]
    # supervised vs random on the same questions, also when the random baseline ran earlier in this directory
    paired = [p for p in (paired_comparison(store, t.name, ids, m, "random") for m in method_list if m != "random")
              if p["n"] > 0]
    report = {"task": t.name, "split": split, "settings": settings, "accuracy": result, "paired": paired}
    path = out / f"solve_{t.name}.json"
    path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    _print_table(t.name, result)
    typer.echo(json.dumps(result, indent=2))
    for p in paired:
        typer.echo(f"paired {p['a']} vs {p['b']} (n={p['n']}): both right {p['both']}, only {p['a']} "
                   f"{p['a_only']}, only {p['b']} {p['b_only']}, neither {p['neither']}; "
                   f"exact McNemar p = {p['p_mcnemar']:.3g}")
    typer.echo(f"written {path}")


def _print_table(task: str, result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"RATIONALYST on {task}: supervised vs random-candidate decoding")
    for col in ("method", "n", "accuracy", "mean steps"):
        table.add_column(col)
    for method, row in result.items():
        table.add_row(method, str(row["n"]), f"{row['accuracy']:.3f}", f"{row['mean_steps']:.1f}")
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(rationalyst_app, name="rationalyst")
