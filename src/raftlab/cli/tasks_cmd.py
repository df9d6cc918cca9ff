"""``raftlab tasks``: list the study tasks (with local train/test counts) and render their prompts."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def _counts(task, data_dir: Optional[Path]) -> tuple[str, str, str]:
    from raftlab.tasks import DataNotFoundError

    try:
        return str(len(task.load("train", data_dir))), str(len(task.load("test", data_dir))), ""
    except DataNotFoundError:
        return "-", "-", "no local files"
    except Exception as exc:  # show the problem, keep listing
        return "-", "-", f"error: {exc}"[:80]


def register(app: typer.Typer) -> None:
    tasks_app = typer.Typer(help="List the study tasks (with train/test counts) and render their prompts.",
                            invoke_without_command=True, no_args_is_help=False)

    @tasks_app.callback()
    def tasks_list(
        ctx: typer.Context,
        category: Optional[str] = typer.Option(None, help="only this category: math|commonsense|nlu|synthetic"),
        data_dir: Optional[Path] = typer.Option(None, help="datasets folder (default: $RAFTLAB_DATA_DIR or ../shared/datasets)"),
        counts: bool = typer.Option(True, "--counts/--no-counts", help="count train/test examples from local files"),
    ) -> None:
        """Table of tasks: name, category, answer type, train/test counts."""
        if ctx.invoked_subcommand is not None:
            return
        from rich.console import Console
        from rich.table import Table

        from raftlab.tasks import all_tasks

        tasks = all_tasks(category)
        if not tasks:
            known = sorted({t.category for t in all_tasks()})
            raise ValueError(f"--category: no tasks in category {category!r}; categories: {', '.join(known)}")
        table = Table(title="raftlab tasks")
        for col in ("task", "category", "group", "answer", "train", "test", "note"):
            table.add_column(col, justify="right" if col in ("train", "test") else "left")
        for t in tasks:
            train, test, note = _counts(t, data_dir) if counts else ("", "", "")
            table.add_row(t.name, t.category, t.group, t.answer_type, train, test, note)
        Console(width=140).print(table)

    @tasks_app.command("show")
    def show(
        name: str = typer.Argument(..., help="task name or alias, e.g. gsm8k, sst-2, cb"),
        mode: str = typer.Option("cot", help="evaluation prompt mode: cot|direct"),
        style: Optional[str] = typer.Option(None, help="show the teacher prompt of annotator A, B or C instead"),
        length: int = typer.Option(3, min=1, max=5, help="teacher rationale length 1 (very brief) .. 5 (very detailed)"),
        index: int = typer.Option(0, min=0, help="which example of the split"),
        split: str = typer.Option("test", help="train|test"),
        target: bool = typer.Option(False, "--target", help="also show the label-only training target"),
        data_dir: Optional[Path] = typer.Option(None, help="datasets folder"),
    ) -> None:
        """Render the prompt of one example (evaluation prompt, or a teacher prompt with --style)."""
        from raftlab.tasks import get_task

        # user errors raise; `raftlab` (cli.main) prints them as one line and exits 2
        task = get_task(name)
        if mode not in ("cot", "direct"):
            raise ValueError(f"--mode must be cot or direct, got {mode!r}")
        if style is not None and style.upper() not in ("A", "B", "C"):
            raise ValueError(f"--style must be A, B or C, got {style!r}")
        examples = task.load(split, data_dir)
        if index >= len(examples):
            raise ValueError(f"--index {index} is out of range: {task.name}/{split} has {len(examples)} examples")
        ex = examples[index]
        what = f"teacher prompt, annotator {style.upper()}, length {length}" if style else f"evaluation prompt ({mode})"
        typer.echo(f"# {task.name} [{split} #{index}] id={ex.id} gold={ex.label} ({ex.label_text()}) - {what}")
        typer.echo("")
        typer.echo(task.teacher_prompt(ex, style, length) if style else task.prompt(ex, mode), nl=not target)
        if target:
            typer.echo(task.target(ex))

    @tasks_app.command("info")
    def info(name: str = typer.Argument(..., help="task name or alias")) -> None:
        """Where a task's data comes from, its split choices, options and license."""
        from raftlab.tasks import get_task

        task = get_task(name)  # unknown: one line, exit 2 (cli.main)
        data = task.data
        source = f"generated: {data.synthetic.generator}" if data.synthetic else f"local folder: {data.dir}"
        lines = [
            f"{task.name} ({task.category}, {task.group}; answer: {task.answer_type})",
            f"aliases: {', '.join(task.aliases) or '-'}",
            f"description: {task.description}",
            f"data: {source}",
            f"hub: {task.hub.path if task.hub else '-'}" + (f" [{task.hub.name}]" if task.hub and task.hub.name else ""),
            f"license: {task.license or '-'}",
            "options: " + (", ".join(f"({x}) {' / '.join(task.verbalizers[x])}" for x in task.option_letters)
                           if task.verbalizers else "per question" if task.answer_type == "choice" else "number"),
            f"notes: {task.notes.strip()}",
            f"config: {task.config_path}",
        ]
        typer.echo("\n".join(lines))

    app.add_typer(tasks_app, name="tasks")
