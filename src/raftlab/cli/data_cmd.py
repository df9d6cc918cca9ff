"""``raftlab data``: validate a JSONL file of examples; export a task's examples as JSONL."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    data_app = typer.Typer(help="Check and export example files (JSONL, one Example per line).", no_args_is_help=True)

    @data_app.command("validate")
    def validate(
        file: Path = typer.Argument(..., help="JSONL file, one Example object per line"),
        task: Optional[str] = typer.Option(None, help="also check consistency with this registered task"),
        max_errors: int = typer.Option(50, min=1, help="stop after this many errors"),
    ) -> None:
        """Report every bad line (invalid JSON, missing fields, labels outside the options); exit 1 on errors."""
        from collections import Counter

        from raftlab.tasks import get_task
        from raftlab.tasks.validate import validate_jsonl

        if not file.is_file():
            raise FileNotFoundError(f"{file}: no such file")
        task_obj = get_task(task) if task is not None else None  # unknown task: one line, exit 2 (main)
        report = validate_jsonl(file, task_obj, max_errors=max_errors)
        for err in report.errors:
            typer.echo(f"error: {err}", err=True)
        if report.errors:
            typer.echo(f"{file}: {len(report.errors)} error(s); {len(report.examples)} valid example(s)", err=True)
            raise typer.Exit(1)
        labels = Counter(e.label for e in report.examples)
        tasks = Counter(e.task for e in report.examples)
        with_rat = sum(1 for e in report.examples if e.rationale)
        typer.echo(f"{file}: OK - {len(report.examples)} examples; tasks {dict(tasks)}; "
                   f"{with_rat} with rationale; labels {dict(labels.most_common(10))}")

    @data_app.command("export")
    def export(
        task: str = typer.Argument(..., help="task name or alias"),
        out: Path = typer.Option(..., "--out", "-o", help="output JSONL file"),
        split: str = typer.Option("test", help="train|test"),
        limit: Optional[int] = typer.Option(None, min=0, help="seeded random subset of this size"),
        seed: int = typer.Option(0),
        data_dir: Optional[Path] = typer.Option(None, help="datasets folder"),
    ) -> None:
        """Write a task split as a JSONL file of Examples (the interchange format)."""
        from raftlab.storage import write_jsonl
        from raftlab.tasks import get_task

        examples = get_task(task).load(split, data_dir, limit=limit, seed=seed)  # errors: one line, exit 2 (main)
        out.parent.mkdir(parents=True, exist_ok=True)
        n = write_jsonl(examples, out)
        typer.echo(f"wrote {n} examples to {out}")

    app.add_typer(data_app, name="data")
