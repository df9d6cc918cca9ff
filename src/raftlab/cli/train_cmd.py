"""``raftlab train``: finetune a model label-only (FT), on rationales (RAFT) or with another objective.

The options are generated from :class:`raftlab.training.TrainConfig` (one settings object: a new field is a new
option), plus ``--config FILE`` (a YAML/JSON mapping of the same fields, e.g. written by a study's launcher;
options given on the command line override it) and ``--debug-tokens``.
"""

from __future__ import annotations

import os

import inspect
import types
import typing
from pathlib import Path
from typing import Any, Optional

import typer


def _base(annotation: Any) -> Any:
    """``X`` of ``X | None``."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if typing.get_origin(annotation) in (typing.Union, types.UnionType) \
        and len(args) == 1 else annotation


def _dict_values(annotation: Any) -> Any:
    """The value type of a ``dict[str, V]`` field (None for other fields)."""
    base = _base(annotation)
    return typing.get_args(base)[1] if typing.get_origin(base) is dict else None


def _cli_type(name: str, annotation: Any) -> Any:
    """The command-line type of a TrainConfig field: ``data`` repeats; dicts are 'a=1,b=2' strings."""
    if name == "data":
        return list[Path]
    base = _base(annotation)
    return base if base in (bool, int, float, str) else str


def _flags(name: str, field: Any) -> list[str]:
    extra = field.json_schema_extra or {}
    if "cli" in extra:
        return list(extra["cli"])
    flag = "--" + name.replace("_", "-")
    return [f"{flag}/--no-{flag[2:]}"] if _cli_type(name, field.annotation) is bool else [flag]


def _parameters() -> list[inspect.Parameter]:
    from raftlab.training.config import TrainConfig

    params = [
        inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],  # noqa: UP045
                          default=typer.Option(None, "--config", "-c", help="YAML/JSON file of TrainConfig fields "
                                               "(options given here override it)")),
        inspect.Parameter("debug_tokens", inspect.Parameter.KEYWORD_ONLY, annotation=int,
                          default=typer.Option(0, help="print N examples token by token (trained or not) and exit")),
    ]
    from raftlab.training.config import TrainSettings

    fields = TrainConfig.model_fields
    run_first = [n for n in fields if n not in TrainSettings.model_fields] + list(TrainSettings.model_fields)
    for name in run_first:
        field = fields[name]
        default = field.default if field.is_required() is False and not isinstance(field.default, (dict, list)) \
            else None
        shown = "" if default is None else f" (default: {default})"
        params.append(inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, annotation=Optional[_cli_type(name, field.annotation)],  # noqa: UP045
            default=typer.Option(None, *_flags(name, field), help=(field.description or "") + shown,
                                 show_default=False)))
    return params


def _pairs(text: str, cast: Any, option: str) -> dict[str, Any]:
    """``"a=1,b=2"`` -> ``{"a": cast("1"), "b": cast("2")}``."""
    try:
        return {k.strip(): cast(v) for k, v in (p.split("=") for p in text.split(","))}
    except ValueError as exc:
        raise typer.BadParameter("use task=value pairs separated by commas", param_hint=option) from exc


def _given(options: dict[str, Any]) -> dict[str, Any]:
    """TrainConfig values from the options actually given on the command line."""
    from raftlab.training.config import TrainConfig

    values = {}
    for name, value in options.items():
        if value is None:
            continue
        cast = _dict_values(TrainConfig.model_fields[name].annotation)
        if name == "data":
            value = [str(d) for d in value]
        elif cast is not None:
            value = _pairs(value, cast, "--" + name.replace("_", "-"))
        values[name] = value
    return values


def train_cmd(**options: Any) -> None:
    """Finetune MODEL on DATA with OBJECTIVE; loss only on target tokens."""
    from pydantic import ValidationError

    from raftlab.cli.errors import error_line
    from raftlab.training import TrainConfig

    config_file, debug_tokens = options.pop("config"), options.pop("debug_tokens")
    given = _given(options)
    if debug_tokens:
        given.setdefault("out", ".")
    try:
        config = TrainConfig.from_file(config_file, **given) if config_file else TrainConfig(**given)
    except ValidationError as exc:
        where = f"{config_file}: " if config_file else ""
        problems = "; ".join(f"{where}field '{'.'.join(str(p) for p in e['loc'])}' "
                             f"(--{str(e['loc'][0]).replace('_', '-')}): {e['msg']}" for e in exc.errors())
        typer.echo(f"error: {problems}", err=True)
        raise typer.Exit(2) from None
    except ValueError as exc:
        typer.echo(error_line(exc), err=True)
        raise typer.Exit(2) from None
    try:
        if debug_tokens:
            _debug(config, debug_tokens)
            return
        from raftlab.allocator import keep_freed_memory
        from raftlab.training import train

        keep_freed_memory()  # this process trains and ends: each step reuses the last one's freed buffers
        saved = train(config)
        if os.environ.get("RANK", "0") == "0":  # one line per run, not per process of a multi-process launch
            typer.echo(f"saved to {saved}")
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(error_line(exc), err=True)
        raise typer.Exit(2) from exc


train_cmd.__signature__ = inspect.Signature(_parameters())  # type: ignore[attr-defined]


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)


def _debug(config: Any, n: int) -> None:
    from rich.console import Console

    from raftlab.models import load_tokenizer
    from raftlab.training.data import load_examples, mean_rationale_tokens, needed_think_tokens, tokenize_examples
    from raftlab.training.debug import render
    from raftlab.rationales.blank import add_think_tokens

    tok = load_tokenizer(config.model)
    examples = load_examples(config.data_paths(), config.objective)[:n]
    blank = config.blank_length or (mean_rationale_tokens(examples, tok) if config.objective == "blank" else None)
    k = needed_think_tokens(examples, config.objective, blank)
    if k:
        add_think_tokens(tok, k)
    console = Console()
    for i, feature in enumerate(tokenize_examples(examples, tok, config.objective, config.max_length, config.task,
                                                  blank)[:n]):
        console.rule(f"example {i} ({config.objective})")
        render(tok, feature, console)

