"""``raftlab report RUN [--out DIR]``: the HTML report (+ figures and tables) of a study run."""

from __future__ import annotations

from pathlib import Path

import typer

from raftlab.cli.errors import error_line


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        run: Path = typer.Argument(..., help="study run directory (with eval/<arm>/<task>/ records)"),
        out: Path = typer.Option(None, "--out", "-o", help="output folder (default: RUN/report)"),
        samples: int = typer.Option(3, "--samples", min=0, help="model outputs shown per task"),
    ) -> None:
        """Write report.html (self-contained), figures (PNG, PDF) and tables (CSV, JSON, LaTeX)."""
        from raftlab.report import render_report
        from raftlab.report.records import RecordError

        try:
            page = render_report(run, out, samples_per_task=samples)
        except (FileNotFoundError, RecordError) as exc:
            typer.echo(error_line(exc), err=True)
            raise typer.Exit(2) from None
        typer.echo(str(page))
