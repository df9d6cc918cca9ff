"""``raftlab study [CONFIG.yaml] [--out RUN]``: the whole FT-vs-RAFT study, cached and resumable."""

from __future__ import annotations

from pathlib import Path

import typer

from raftlab.study.config import PRESETS


def register(app: typer.Typer) -> None:
    @app.command("study")
    def study(
        config: str = typer.Argument(None, help="study YAML, or a built-in name: default | quick | paper "
                                               "(no argument: the built-in default, sized for 2 CPU cores)"),
        out: Path = typer.Option(None, "--out", "-o", help="run directory (default: runs/<study name>)"),
        quick: bool = typer.Option(False, "--quick", help="the built-in quick config (tiny random-init model: "
                                   "checks the pipeline)"),
        preset: str = typer.Option(None, "--preset", help="a built-in config: " + "; ".join(
            f"{name}: {line}" for name, line in PRESETS.items())),
        rerun_changed: bool = typer.Option(False, "--rerun-changed",
                                           help="redo stages whose config changed (default: stop with an error)"),
        show_config: bool = typer.Option(False, "--show-config", help="print the resolved config and exit"),
        show_plan: bool = typer.Option(False, "--plan", help="print every stage with its key and what a run would "
                                       "do with it (done / would run / would resume / changed, with the inputs "
                                       "that changed), then exit; runs nothing and creates nothing"),
        as_json: bool = typer.Option(False, "--json", help="with --plan: print the plan as JSON"),
        gpu: str = typer.Option("h100", "--gpu", help="with --plan: the GPU kind the estimate prices GPU-hours "
                                "for (a row of src/raftlab/study/throughput.yaml: h100, h200, a100, l40s, a10g)"),
        price_in: float = typer.Option(None, "--price-in", min=0, help="with --plan: the teacher's price in USD "
                                       "per million input tokens (absent or 0 with --price-out: no cost)"),
        price_out: float = typer.Option(None, "--price-out", min=0, help="with --plan: the teacher's price in "
                                        "USD per million output tokens"),
        kept_rate: float = typer.Option(None, "--kept-rate", min=0.01, max=1.0, help="with --plan: share of "
                                        "teacher attempts assumed to reach the gold answer (default 0.7)"),
        rationale_tokens: int = typer.Option(None, "--rationale-tokens", min=1, help="with --plan: tokens "
                                             "assumed per rationale (default 120, capped by teacher.max_new_tokens)"),
        pilot: int = typer.Option(None, "--pilot", min=1, help="with --plan: send N real requests to the teacher "
                                  "first (one attempt each, spread over the tasks, stored nowhere) and estimate with "
                                  "their kept rate and length"),
        seed: int = typer.Option(None, "--seed", help="override the config's seed (data order, training, "
                                 "sampling): e.g. to check that a result is stable"),
    ) -> None:
        """Run rationales → train FT and RAFT (+ optional arms) → self-consistency eval → analysis → report."""
        import yaml
        from rich.console import Console

        from raftlab import layout
        from raftlab.cli.errors import USER_ERRORS, error_line
        from raftlab.study import ConfigError, StageChangedError, StageFailed, load_config, run_study

        console = Console(stderr=True)
        if sum(bool(x) for x in (quick, config, preset)) > 1:
            raise typer.BadParameter("give one of CONFIG, --quick and --preset")
        if preset is not None and preset not in PRESETS:
            raise typer.BadParameter(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        try:
            cfg = load_config("quick" if quick else preset or config)
        except ConfigError as exc:
            typer.echo(error_line(exc), err=True)
            raise typer.Exit(2) from None
        if seed is not None:
            cfg = cfg.model_copy(update={"seed": seed})
        if as_json and not show_plan:
            raise typer.BadParameter("--json goes with --plan")
        priced = {"--price-in": price_in, "--price-out": price_out, "--kept-rate": kept_rate,
                  "--rationale-tokens": rationale_tokens, "--pilot": pilot}
        if not show_plan and any(v is not None for v in priced.values()):
            raise typer.BadParameter(f"{next(k for k, v in priced.items() if v is not None)} goes with --plan")
        if show_config:
            typer.echo(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
            return
        run_dir = out or Path("runs") / cfg.name
        if show_plan:
            try:
                print_plan(cfg, run_dir, as_json, dict(gpu=gpu, price_in=price_in, price_out=price_out,
                                                       kept_rate=kept_rate, rationale_tokens=rationale_tokens,
                                                       pilot=pilot))
            except ValueError as exc:
                typer.echo(error_line(exc), err=True)
                raise typer.Exit(2) from None
            return
        console.print(f"study [bold]{cfg.name}[/bold]: {len(cfg.tasks)} tasks x arms {', '.join(cfg.arms)} "
                      f"with {cfg.model} (teacher {cfg.teacher.backend}) → {run_dir}")
        try:
            result = run_study(cfg, run_dir, on_change="rerun" if rerun_changed else "error")
        except StageChangedError as exc:
            typer.echo(error_line(exc), err=True)
            raise typer.Exit(2) from None
        except StageFailed as exc:  # a user error inside a stage (a damaged file, a store in use): exit 2
            typer.echo(error_line(exc), err=True)
            raise typer.Exit(2 if isinstance(exc.__cause__, USER_ERRORS) else 1) from None
        except KeyboardInterrupt:
            typer.echo(f"interrupted; rerun the same command to resume from {run_dir}", err=True)
            raise typer.Exit(130) from None
        console.print(f"done: {len(result.executed)} stages run, {len(result.skipped)} reused")
        analysis = run_dir / layout.ANALYSIS_FILE
        if analysis.is_file():
            from raftlab.analysis.models import AnalysisResult
            from raftlab.cli.analyze_cmd import print_answer, print_checks

            saved = AnalysisResult.load(str(analysis))
            print_checks(console, saved)
            print_answer(console, saved)
        if result.report is not None:
            typer.echo(str(result.report))


def print_plan(cfg, run_dir: Path, as_json: bool, pricing: dict | None = None) -> None:  # noqa: ANN001
    """``--plan``: the stages, their keys and status, and what the study will cost (JSON: ``{"run_dir",
    "stages": [...], "estimate": {...}}``, see :mod:`raftlab.study.estimate`)."""
    import json
    from collections import Counter

    from raftlab.study import plan_study
    from raftlab.study.estimate import plan_estimate

    stages = plan_study(cfg, run_dir)
    estimate = plan_estimate(cfg, stages, **(pricing or {}))
    if as_json:
        typer.echo(json.dumps({"run_dir": str(run_dir), "stages": stages, "estimate": estimate}, indent=2))
        return
    width = max(len(s["stage"]) for s in stages)
    for s in stages:
        why = ""
        if s["status"] == "changed":
            why = "  (" + ", ".join([*s["changed_inputs"], *(f"stage {d}" for d in s["changed_deps"])]
                                    or [s.get("reason", "")]) + ")"
        typer.echo(f"{s['stage']:<{width}}  {s['key']}  {s['status']}{why}")
    counts = Counter(s["status"] for s in stages)
    typer.echo(f"{len(stages)} stages in {run_dir}: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    print_estimate(estimate)


def print_estimate(est: dict) -> None:
    """The estimate in a few lines, then its assumptions."""
    tokens = est["teacher_tokens"]
    cost = "no price given" if est["teacher_cost_usd"] is None else f"USD {est['teacher_cost_usd']:,.2f}"
    typer.echo(f"estimate: teacher {est['teacher_requests']:,} requests, {tokens['input']:,} input + "
               f"{tokens['output']:,} output tokens, {cost}")
    hours = est["gpu_hours"]
    if hours is not None:
        kinds = ", ".join(f"{k} {v:,.2f}" for k, v in hours["by_kind"].items())
        typer.echo(f"estimate: student {hours['total']:,.2f} GPU-hours on {hours['gpu']} ({hours['status']}): {kinds}")
    disk = est["disk_gb"]
    models = "unknown" if disk["models"] is None else f"{disk['models']:,.1f} GB"
    typer.echo(f"estimate: disk {models} of models + {disk['records']:,.2f} GB of records")
    judge = est.get("judge") or {}
    if judge.get("requests"):
        cost = "" if judge["cost_usd"] is None else f", USD {judge['cost_usd']:,.2f}"
        typer.echo(f"estimate: judge {judge['requests']:,} requests, {judge['tokens']['total']:,} tokens{cost}")
    for line in est["assumptions"]:
        typer.echo(f"  assumed: {line}")
