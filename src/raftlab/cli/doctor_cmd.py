"""``raftlab doctor [CONFIG]``: check that this machine can run a study, one line per check with its fix."""

from __future__ import annotations

from pathlib import Path

import typer

from raftlab.study.config import PRESETS


def register(app: typer.Typer) -> None:
    @app.command("doctor")
    def doctor(
        config: str = typer.Argument(None, help="study YAML or a built-in name (default | quick | paper); without "
                                               "one, only the machine is checked"),
        out: Path = typer.Option(None, "--out", "-o", help="the run directory whose disk is checked (default: "
                                                           "runs/<study name>)"),
        preset: str = typer.Option(None, "--preset", help="a built-in config: " + ", ".join(PRESETS)),
    ) -> None:
        """Device and bf16, memory for the student, vLLM/accelerate, the teacher endpoint and key, each task's
        data, the model, free disk. Exit 0 when every required check passes, 1 otherwise, 2 for a bad config."""
        from raftlab.cli.errors import error_line
        from raftlab.study import ConfigError, load_config
        from raftlab.study.doctor import passed, run_checks

        if config and preset:
            raise typer.BadParameter("give CONFIG or --preset, not both")
        if preset is not None and preset not in PRESETS:
            raise typer.BadParameter(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        cfg = None
        if config or preset:
            try:
                cfg = load_config(preset or config)
            except ConfigError as exc:
                typer.echo(error_line(exc), err=True)
                raise typer.Exit(2) from None
        checks = run_checks(cfg, out or Path("runs") / (cfg.name if cfg else "study"))
        for check in checks:
            typer.echo(check.line())
        failed = [c.name for c in checks if c.status == "FAIL"]
        typer.echo(f"{len(checks)} checks: " + (f"{len(failed)} failed ({', '.join(failed)})" if failed
                                                else "every required check passed"))
        if not passed(checks):
            raise typer.Exit(1)
