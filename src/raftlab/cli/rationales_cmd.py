"""``raftlab rationales generate|judge|blank|stats|export``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from raftlab.cli.errors import error_line
from raftlab.cli.options import backend_options_flag, knob_option

rationales_app = typer.Typer(no_args_is_help=True, help="Teacher rationales: generate, judge, blank, export.")
STORE = "rationales.sqlite"


def _tokenizer(spec: str | None):
    if not spec:
        return None
    from raftlab.models import load_tokenizer

    return load_tokenizer(spec)


def _store(run: Path) -> Path:
    path = run / STORE if run.is_dir() or not run.suffix else run
    if not path.exists():
        raise typer.BadParameter(f"{path} does not exist (run `raftlab rationales generate --out {run}` first)")
    return path


def _target(store: Path) -> int | None:
    """The latest generate run's ``--n``: the store may keep a few more (a local teacher's last call), which
    ``rationales.jsonl``, the judge and an export leave out."""
    from raftlab.rationales import RationaleStore

    with RationaleStore(store, writer=False) as db:
        return db.target()


@rationales_app.command("generate")
def generate_cmd(
    task: str = typer.Option(..., "--task", "-t"),
    teacher: str = typer.Option(..., help="BACKEND:MODEL (hf:smollm2, openai:gpt-4o-mini@URL, vllm:...) or 'oracle'"),
    n: int = typer.Option(20000, min=1, help="stop once this many rationales are kept"),
    traversals: int = typer.Option(1, "--traversals", min=1, help="times the data may be gone through to keep -n "
                                   "rationales (a later traversal gives every example a fresh rationale; the "
                                   "paper traverses until it has 20k)"),
    prompt_style: str = typer.Option("A", help="annotator style A | B | C"),
    length: int = typer.Option(3, min=1, max=5, help="length level (the paper's App. D.2): 1 most thorough .. 3 "
                        "step by step .. 5 shortest"),
    max_retries: int = typer.Option(10, min=1),
    concurrency: int = typer.Option(4, min=1, help="examples sent to the teacher at once"),
    samples_per_prompt: int = typer.Option(None, min=1, help="an example's next attempts drawn as n samples of one "
                                           "request (samples after its first kept one are discarded; default: 4 for "
                                           "a local teacher, 1 for an API teacher)"),
    temperature: float = knob_option("temperature", 0.7),
    max_new_tokens: int = knob_option("max_new_tokens", 256, help="generation budget of each rationale"),
    data: Path = typer.Option(None, help="a JSONL of Examples instead of the task's split"),
    split: str = typer.Option("train"),
    limit: int = typer.Option(None),
    data_dir: str = typer.Option(None),
    seed: int = typer.Option(0),
    tokenizer: str = typer.Option(None, help="count rationale lengths in this model's tokens (default: words)"),
    force_new_run: bool = typer.Option(False, help="discard a store made with other settings"),
    out: Path = typer.Option(..., "--out", "-o", help="run directory"),
    backend_option: list[str] = backend_options_flag("the teacher"),
) -> None:
    """Prompt the teacher per example, keep rationales that reach the gold answer (with retries)."""
    from raftlab.rationales import SettingsMismatch, export_jsonl, generate_rationales
    from raftlab.tasks import get_task, load_jsonl

    t = get_task(task)
    try:
        examples = load_jsonl(data, t) if data else t.load(split, data_dir=data_dir, limit=limit, seed=seed)
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(error_line(exc), err=True)
        raise typer.Exit(2) from exc
    if data and limit:
        examples = examples[:limit]
    if teacher == "oracle":
        from raftlab.rationales.oracle import OracleTeacher

        backend, samples_per_prompt = OracleTeacher(t, examples), 1
    else:
        from raftlab.backends import parse_backend_options
        from raftlab.rationales import default_samples_per_prompt, teacher_backend

        samples_per_prompt = samples_per_prompt or default_samples_per_prompt(teacher)
        backend = teacher_backend(teacher, parse_backend_options(backend_option), concurrency)
    out.mkdir(parents=True, exist_ok=True)
    try:
        stats = generate_rationales(backend, t, examples, out / STORE, n=n, max_retries=max_retries,
                                    style=prompt_style.upper(), length=length, concurrency=concurrency,
                                    samples_per_prompt=samples_per_prompt,
                                    temperature=temperature, max_new_tokens=max_new_tokens, seed=seed,
                                    traversals=traversals, tokenizer=_tokenizer(tokenizer), force_new_run=force_new_run)
    except KeyboardInterrupt:
        typer.echo(f"interrupted: everything so far is in {out / STORE}; rerun the same command to resume", err=True)
        raise typer.Exit(130) from None
    except (SettingsMismatch, ValueError) as exc:
        typer.echo(error_line(exc), err=True)
        raise typer.Exit(2) from exc
    stats["exported"] = export_jsonl(out / STORE, out / "rationales.jsonl", limit=n)
    typer.echo(json.dumps(stats, indent=2))
    if stats.get("pending"):
        typer.echo(f"incomplete: {stats['pending']} examples are pending because their requests kept failing "
                   f"(last error: {stats.get('last_request_error')}); nothing was counted against their "
                   "--max-retries. Rerun the same command to resume them.", err=True)
        raise typer.Exit(3)


@rationales_app.command("judge")
def judge_cmd(
    run: Path = typer.Option(..., "--run", help="run directory"),
    judge: str = typer.Option(..., help="BACKEND:MODEL of the judge"),
    backend_option: list[str] = backend_options_flag("the judge"),
    sample: int = typer.Option(100, help="number of kept rationales to judge (seeded sample)"),
    seed: int = typer.Option(0),
) -> None:
    """LLM-as-judge: analysis then "Helpful"/"Unhelpful" for a sample of kept rationales."""
    from raftlab.backends import parse_backend_options
    from raftlab.rationales import judge_rationales
    from raftlab.rationales.judge import judge_backend

    store = _store(run)
    options = parse_backend_options(backend_option)
    result = judge_rationales(judge_backend(judge, options), store, sample=sample, seed=seed, limit=_target(store))
    typer.echo(json.dumps(result, indent=2))
    if result["pending"]:
        typer.echo(f"incomplete: {result['pending']} rationales are pending because the judge's requests kept "
                   "failing; rerun the same command to judge them.", err=True)
        raise typer.Exit(3)


@rationales_app.command("blank")
def blank_cmd(
    run: Path = typer.Option(..., "--run", help="run directory (or a rationales JSONL)"),
    length: str = typer.Option("task_mean", help="task_mean | own | an integer"),
    tokenizer: str = typer.Option(None, help="count lengths in this model's tokens (default: words)"),
    out: Path = typer.Option(..., "--out", "-o", help="output JSONL"),
) -> None:
    """Write blank-rationale data: each rationale replaced by <Think_0> … <Think_{L-1}>."""
    from raftlab.rationales import make_blank_rationales

    src = run / "rationales.jsonl" if run.is_dir() else run
    if not src.exists():
        raise typer.BadParameter(f"{src} does not exist (run `raftlab rationales generate` or `export` first)")
    if not (length.isdigit() or length in ("task_mean", "own")):
        raise typer.BadParameter(f"--length must be task_mean, own or an integer, not {length!r}")
    try:
        n = len(make_blank_rationales(src, int(length) if length.isdigit() else length, _tokenizer(tokenizer),
                                        out=out))
    except ValueError as exc:
        typer.echo(error_line(exc), err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"wrote {n} blank-rationale examples to {out}")


@rationales_app.command("stats")
def stats_cmd(run: Path = typer.Argument(..., help="run directory"),
              tokenizer: str = typer.Option(None, help="count lengths in this model's tokens")) -> None:
    """Kept ratio, attempts per example, rationale length."""
    from raftlab.rationales import run_stats

    typer.echo(json.dumps(run_stats(_store(run), _tokenizer(tokenizer)), indent=2))


@rationales_app.command("export")
def export_cmd(run: Path = typer.Argument(...), out: Path = typer.Option(..., "--out", "-o"),
               limit: int = typer.Option(None, min=1, help="the first LIMIT kept in the data's order (default: the "
                                         "latest generate run's --n)")) -> None:
    """Export kept rationales as training JSONL (Examples with `rationale`)."""
    from raftlab.rationales import export_jsonl

    store = _store(run)
    typer.echo(f"wrote {export_jsonl(store, out, limit=limit or _target(store))} examples to {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(rationales_app, name="rationales")
