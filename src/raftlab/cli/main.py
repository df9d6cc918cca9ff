"""Entry point of the ``raftlab`` command.

Each command group lives in ``raftlab/cli/<name>_cmd.py`` and exposes
``register(app: typer.Typer) -> None``. Heavy imports (torch, transformers)
happen inside the commands so that ``raftlab --help`` stays fast.
"""

from __future__ import annotations

import os
import sys

import typer

from raftlab.cli import (
    analyze_cmd, data_cmd, eval_cmd, rationales_cmd, rationalyst_cmd, report_cmd, serve_cmd, study_cmd, tasks_cmd,
    train_cmd,
)

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="raftlab: measure what finetuning on rationales does to accuracy and calibration.")

#: Set by ``--debug`` (or ``RAFTLAB_DEBUG=1``): show tracebacks instead of one-line errors.
DEBUG = {"on": os.environ.get("RAFTLAB_DEBUG", "") not in ("", "0")}


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
                report_cmd, rationalyst_cmd):
    _module.register(app)


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc) or type(exc).__name__


def main() -> None:
    """The ``raftlab`` command: a user error (bad value, unknown name, missing or bad file, settings clash) prints
    one line and exits 2; anything else prints one line and exits 1. ``--debug`` shows the traceback."""
    try:
        app()
    except (ValueError, KeyError, OSError) as exc:  # user errors: bad values, unknown names, files, settings
        if DEBUG["on"]:
            raise
        typer.echo(f"error: {_message(exc)}", err=True)
        sys.exit(2)
    except Exception as exc:  # noqa: BLE001 - a bug or an environment problem: one line, the traceback on --debug
        if DEBUG["on"]:
            raise
        typer.echo(f"error: {type(exc).__name__}: {_message(exc)} (rerun with --debug for the traceback)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
