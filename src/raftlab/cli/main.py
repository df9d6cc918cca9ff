"""Entry point of the ``raftlab`` command.

Each command group lives in ``raftlab/cli/<name>_cmd.py`` and exposes
``register(app: typer.Typer) -> None``. Heavy imports (torch, transformers)
happen inside the commands so that ``raftlab --help`` stays fast.
"""

from __future__ import annotations

import typer

from raftlab.cli import (
    analyze_cmd, data_cmd, eval_cmd, rationales_cmd, rationalyst_cmd, report_cmd, serve_cmd, study_cmd, tasks_cmd,
    train_cmd,
)

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="raftlab: measure what finetuning on rationales does to accuracy and calibration.")


@app.callback()
def _options(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="more detail (-vv: library logs too)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="warnings and results only"),
) -> None:
    from raftlab.cli.logs import setup_logging

    setup_logging(verbose, quiet)


# Order of the groups in `raftlab --help`: the pipeline's order.
for _module in (study_cmd, tasks_cmd, data_cmd, rationales_cmd, train_cmd, eval_cmd, serve_cmd, analyze_cmd,
                report_cmd, rationalyst_cmd):
    _module.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
