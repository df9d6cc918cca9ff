"""Entry point of the ``raftlab`` command.

Each command group lives in ``raftlab/cli/<name>_cmd.py`` and exposes
``register(app: typer.Typer) -> None``. Heavy imports (torch, transformers)
happen inside the commands so that ``raftlab --help`` stays fast.
"""

from __future__ import annotations

import os

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from raftlab.cli import (
    analyze_cmd, data_cmd, doctor_cmd, eval_cmd, rationales_cmd, rationalyst_cmd, report_cmd, serve_cmd, study_cmd,
    tasks_cmd, train_cmd,
)
from raftlab.cli.errors import USER_ERRORS, error_line, message

#: Set by ``--debug`` (or ``RAFTLAB_DEBUG=1``): show tracebacks instead of one-line errors.
DEBUG = {"on": os.environ.get("RAFTLAB_DEBUG", "") not in ("", "0")}


class _Commands(TyperGroup):
    """The error policy of every command, applied where the command runs (so that the installed command and
    typer's test runner behave the same): a user error (bad value, unknown name, missing or damaged file, settings
    clash, damaged store: :data:`raftlab.cli.errors.USER_ERRORS`) prints one line and exits 2; anything else
    prints one line and exits 1. ``--debug`` (or RAFTLAB_DEBUG=1) shows the traceback instead."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, TyperException):  # usage errors and exits: typer prints them
            raise
        except USER_ERRORS as exc:
            if DEBUG["on"]:
                raise
            typer.echo(error_line(exc), err=True)
            raise typer.Exit(2) from None
        except Exception as exc:  # noqa: BLE001 - a bug or an environment problem: one line, traceback on --debug
            if DEBUG["on"]:
                raise
            typer.echo(f"error: {type(exc).__name__}: {message(exc)} (rerun with --debug for the traceback)",
                       err=True)
            raise typer.Exit(1) from None


app = typer.Typer(cls=_Commands, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="raftlab: measure what finetuning on rationales does to accuracy and calibration.")


@app.callback()
def _options(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="more detail (-vv: library logs too)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="warnings and results only"),
    debug: bool = typer.Option(False, "--debug", help="show Python tracebacks (also RAFTLAB_DEBUG=1)"),
) -> None:
    from raftlab.cli.logs import setup_logging

    DEBUG["on"] = DEBUG["on"] or debug
    setup_logging(verbose, quiet)


# Order of the groups in `raftlab --help`: the pipeline's order.
for _module in (study_cmd, tasks_cmd, data_cmd, rationales_cmd, train_cmd, eval_cmd, serve_cmd, analyze_cmd,
                report_cmd, rationalyst_cmd, doctor_cmd):
    _module.register(app)


def main() -> None:
    """The ``raftlab`` command (errors: see :class:`_Commands`)."""
    app()


if __name__ == "__main__":
    main()
