"""``raftlab analyze RUNS...`` (ΔAcc/ΔECE with CIs and the OLS fit) and ``raftlab predict`` (ΔAcc of a new task)."""

from __future__ import annotations

from pathlib import Path

import typer

from raftlab.cli.errors import error_line
from raftlab.cli.options import backend_options_flag


def merge_runs(runs: list[Path]) -> dict[str, dict[str, Path]]:
    """``task -> arm -> eval folder`` over several run directories; a task found in several runs is
    named ``<run>/<task>`` so that none is silently dropped."""
    from raftlab.analysis import discover_runs

    found = [(run, discover_runs(run)) for run in runs]
    counts = _task_counts(found)
    merged: dict[str, dict[str, Path]] = {}
    for run, tasks in found:
        for task, arms in tasks.items():
            merged[f"{run.name}/{task}" if counts[task] > 1 else task] = arms
    return merged


def _task_counts(found: list[tuple[Path, dict]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, tasks in found:
        for task in tasks:
            counts[task] = counts.get(task, 0) + 1
    return counts


def merge_sizes(runs: list[Path]) -> dict:
    """``task -> size -> SizedArms`` (the learning-curve arms) over several run directories, tasks named as
    :func:`merge_runs` names them."""
    from raftlab.analysis import discover_runs, discover_sizes

    counts = _task_counts([(run, discover_runs(run)) for run in runs])
    return {f"{run.name}/{task}" if counts.get(task, 0) > 1 else task: by_size
            for run in runs for task, by_size in discover_sizes(run).items()}


def print_checks(console, result) -> None:
    """The failed artifact checks, before any number (or one line saying every check passed)."""
    flagged = [row for row in result.tasks if not row.trustworthy]
    if not flagged:
        console.print("artifact checks: passed on every task", style="green")
        return
    for row in flagged:
        console.print(f"NOT TRUSTWORTHY {row.task}: " + "; ".join(row.reasons), style="bold red", markup=False)


def training_text(arm: str, info: dict) -> str:
    """``RAFT: early_stopping at step 30 of 200 (best step 24)`` / ``FT: max_steps at 16, still improving``."""
    text = f"{arm.upper()}: {info.get('stop_reason') or 'stopped'} at step {info.get('steps')}"
    text += f" of {info['max_steps']}" if info.get("max_steps") else ""
    text += f" (best step {info['best_step']})" if info.get("best_step") is not None else ""
    return text + (", still improving" if info.get("still_improving") else "")


def print_training(console, result) -> None:
    """How each trained arm's training ended, one line per task (when the models recorded it)."""
    for row in result.tasks:
        if row.training:
            console.print(f"training {row.task}: " + "; ".join(training_text(arm, info) for arm, info in
                                                               row.training.items()), markup=False)


def print_answer(console, result) -> None:
    """The answer in words (analysis.headline): one line per task, then the across-task fit."""
    from raftlab.analysis import headline

    console.print("answer:", style="bold")
    for line in headline(result):
        console.print(f"  {line}", markup=False, style=None if "NOT TRUSTWORTHY" not in line else "red")


def print_four_arms(console, result) -> None:
    """The paper's four-arm table (ECE and accuracy of ①–④ and their differences), when the arms are there."""
    from rich.table import Table

    from raftlab.analysis import ARM_DESCRIPTIONS, CONTRASTS, PAPER_ARMS, four_arm_rows

    rows = four_arm_rows(result.tasks)
    if not rows:
        return
    labels, names = list(PAPER_ARMS.values()), [n for n, _, _ in CONTRASTS]
    for metric, title in (("ece", "ECE"), ("acc", "accuracy")):
        table = Table(title=f"{title}: untrained ①② vs finetuned ③④ (differences a − b, 95% bootstrap CI)")
        for col in ["task", *labels, *names]:
            table.add_column(col, justify="left" if col == "task" else "right")
        for r in rows:
            cells = [f"{r[f'{metric}_{lab}']:.3f}" if r.get(f"{metric}_{lab}") is not None else "–" for lab in labels]
            for n in names:
                v, lo, hi = (r.get(f"{metric}_{n}{s}") for s in ("", "_low", "_high"))
                cells.append("–" if v is None else f"{v:+.3f}" + (f" [{lo:+.3f}, {hi:+.3f}]" if lo is not None
                                                                   and hi is not None else ""))
            table.add_row(str(r["task"]), *cells)
        console.print(table)
    console.print("; ".join(f"{lab} {ARM_DESCRIPTIONS[arm]}" for arm, lab in PAPER_ARMS.items()), markup=False)
    print_token_prob(console, result)


def print_token_prob(console, result) -> None:
    """The label-only arms' calibration with the vote share vs the answer tokens' probability as confidence."""
    from rich.table import Table

    from raftlab.analysis import PAPER_ARMS

    scored = [(t, arm) for t in result.tasks for arm in t.token_prob if arm in t.metrics]
    if not scored:
        return
    table = Table(title="label-only arms: confidence from the vote share vs the answer tokens' probability")
    for col in ("task", "arm", "acc votes", "acc token-prob", "ECE votes", "ECE token-prob"):
        table.add_column(col, justify="left" if col in ("task", "arm") else "right")
    fmt = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    for t, arm in scored:
        votes, prob = t.metrics[arm], t.token_prob[arm]
        table.add_row(t.task, f"{PAPER_ARMS.get(arm, '')} {arm}", fmt(votes.get("accuracy")), fmt(prob.get("accuracy")),
                      fmt(votes.get("ece")), fmt(prob.get("ece")))
    console.print(table)


def print_sizes(console, result) -> None:
    """The learning curve of each task with ``train_sizes``: RAFT vs FT per training-set size."""
    from rich.table import Table

    rows = [(t.task, p) for t in result.tasks for p in t.sizes]
    if not rows:
        return
    table = Table(title="RAFT vs FT by training-set size (the same questions for both arms; 95% bootstrap CI)")
    for col in ("task", "train size", "trained on", "Acc FT", "Acc RAFT", "ΔAcc", "ΔECE"):
        table.add_column(col, justify="left" if col == "task" else "right")
    for task, p in rows:
        d = p.delta
        table.add_row(task, f"{p.size}" + (" (full)" if p.full else ""), "–" if p.n_train is None else str(p.n_train),
                      f"{d.acc_ft:.3f}", f"{d.acc_raft:.3f}", d.delta_acc.text(3), d.delta_ece.text(3))
    console.print(table)


def print_fits(console, result) -> None:
    """The ΔECE-vs-ΔAcc fit and the difficulty fits, each with the tasks it is over and the direction of its
    one-tailed p; both ways (main and ``other_*``) when a task is flagged."""
    for fit, d_fits in ((result.fit, result.difficulty_fits), (result.other_fit, result.other_difficulty_fits)):
        if fit is not None:
            console.print(f"OLS over {fit.tasks_text()}: ΔECE = {fit.slope:.4f}·ΔAcc {fit.intercept:+.4f}"
                          + (f"  (Pearson {fit.stats_text()})" if fit.r is not None else ""), markup=False)
        if d_fits and fit is None:
            console.print(f"difficulty fits over {d_fits[0].tasks_text()}:", markup=False)
        for f in d_fits:
            console.print(f"  {f.y} = {f.slope:.4g}·{f.x} {f.intercept:+.4g}"
                          + (f"  ({f.stats_text()})" if f.r is not None else ""), markup=False)


def register(app: typer.Typer) -> None:
    @app.command("analyze")
    def analyze(
        runs: list[Path] = typer.Argument(..., help="study run directories (with eval/<arm>/<task>/ records)"),
        out: Path = typer.Option(None, "--out", "-o", help="write the analysis JSON here "
                                                           "(default: analysis.json in the first run)"),
        n_boot: int = typer.Option(1000, "--n-boot", min=0, help="bootstrap resamples (0: no CIs)"),
        seed: int = typer.Option(0, "--seed"),
        invalid: str = typer.Option("vote", "--invalid", help="scoring of unparseable answers: vote (an answer of "
                                    "its own) | exclude (majority of valid votes) | abstain (drop invalid-majority "
                                    "questions)"),
        include_flagged: bool = typer.Option(False, "--include-flagged", help="keep tasks that fail an artifact "
                                             "check in the main across-task fits (the fits over all tasks, "
                                             "as the paper, are shown either way)"),
        validation: list[str] = typer.Option(None, "--validation", help="a task left out of the across-task fits "
                                             "and checked against them (repeatable; the paper: subj, coinflip)"),
    ) -> None:
        """Per task ΔAcc = Acc_RAFT − Acc_FT and ΔECE = −(ECE_RAFT − ECE_FT) with 95% CIs; OLS ΔECE ~ ΔAcc.

        Artifact checks (truncation, invalid answers, ...) come first: a task that fails one is marked not
        trustworthy and left out of the main fits; the fits over all tasks (as the paper) are printed beside
        them. Each one-tailed p tests the relation's hypothesised sign (H1: r > 0, or r < 0 for accuracies).
        A study with train_sizes also gets its learning curve: ΔAcc and ΔECE per training-set size."""
        from rich.console import Console
        from rich.table import Table

        from raftlab.analysis import RecordError, analyze_study
        from raftlab.analysis.records import INVALID_POLICIES

        if invalid not in INVALID_POLICIES:
            typer.echo(f"error: --invalid must be one of {', '.join(INVALID_POLICIES)}, not {invalid!r}", err=True)
            raise typer.Exit(2)
        try:
            result = analyze_study(merge_runs(runs), n_boot=n_boot, seed=seed, invalid=invalid,
                                   include_flagged=include_flagged, sizes=merge_sizes(runs),
                                   validation=validation or ())
        except (FileNotFoundError, RecordError) as exc:
            typer.echo(error_line(exc), err=True)
            raise typer.Exit(2) from None
        console = Console(width=max(Console().width, 170))
        print_checks(console, result)
        table = Table(title="RAFT vs FT (95% bootstrap CI)")
        for col in ("task", "n", "Acc FT", "Acc RAFT", "ECE FT", "ECE RAFT", "ΔAcc", "ΔECE", "majority/chance",
                    "verdict"):
            table.add_column(col, justify="left" if col in ("task", "verdict") else "right")
        for row in result.tasks:
            d = row.delta
            base = "/".join(f"{row.baselines[b]:.2f}" if b in row.baselines else "–"
                            for b in ("majority_class", "chance"))
            verdict = "ok" if row.trustworthy else "[red]not trustworthy[/red]"
            verdict += " (validation)" if row.role == "validation" else ""
            if d is None:
                table.add_row(row.task, str(row.n), *["–"] * 6, base, verdict)
                continue
            table.add_row(row.task, str(row.n), f"{d.acc_ft:.3f}", f"{d.acc_raft:.3f}", f"{d.ece_ft:.3f}",
                          f"{d.ece_raft:.3f}", d.delta_acc.text(3), d.delta_ece.text(3), base, verdict)
        console.print(table)
        print_training(console, result)
        print_four_arms(console, result)
        print_sizes(console, result)
        print_fits(console, result)
        for note in result.notes:
            console.print(f"note: {note}", style="yellow")
        print_answer(console, result)
        path = out or runs[0] / "analysis.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        result.save(str(path))
        typer.echo(str(path))

    @app.command("predict")
    def predict(
        task: str = typer.Option(..., "--task", help="the task the estimate is for (a label in the output)"),
        metric: str = typer.Option(None, "--metric", help="difficulty metric: acc_ft (label-only FT accuracy in "
                                   "[0, 1]) | length (Eq. 9: mean words of the rationales an UNTRAINED base model "
                                   "writes under mix-of-task prompting; the paper fit it on LLaMA-2-7B; "
                                   "--length-from computes it)"),
        value: float = typer.Option(None, "--value", help="the task's value of that metric"),
        fit: Path = typer.Option(None, "--fit", help="your own fit: a save_fit JSON or an analysis.json "
                                                     "(default: the paper's published fits)"),
        run: Path = typer.Option(None, "--run", help="take acc_ft of --task from this study run (FT arm)"),
        length_from: str = typer.Option(None, "--length-from", help="compute the length metric of --task with "
                                        "this untrained base model (backend spec, e.g. hf:smollm2) as the paper "
                                        "did (Eq. 8): mix-of-task prompting with --rationales, --questions x --k "
                                        "samples, mean length in words"),
        rationales: Path = typer.Option(None, "--rationales", help="with --length-from: the teacher's kept "
                                        "rationales that give Eq. 8's demonstrations (3 other tasks): a study run "
                                        "directory (RUN/rationales/<task>/rationales.jsonl) or a folder of "
                                        "<task>/rationales.jsonl"),
        questions: int = typer.Option(20, min=1, help="with --length-from: test questions"),
        k: int = typer.Option(10, min=1, help="with --length-from: samples per question"),
        backend_option: list[str] = backend_options_flag("the --length-from model"),
    ) -> None:
        """Estimate ΔAcc of RAFT over FT for a task from its difficulty (paper fits or your study's)."""
        import json

        from raftlab.analysis import PUBLISHED_FITS, load_records, predict_gain

        if run is not None:
            from raftlab import layout

            folder = run / layout.evaluation("ft", task)
            if value is not None:
                raise typer.BadParameter("give --value or --run, not both")
            try:
                value = float(load_records(folder).correct.mean())
            except FileNotFoundError:
                raise typer.BadParameter(f"{folder}: no FT eval records for task {task!r}") from None
            metric = metric or "acc_ft"
            if metric != "acc_ft":
                raise typer.BadParameter("--run provides acc_ft; use --metric acc_ft")
        if length_from is not None:
            if value is not None or run is not None:
                raise typer.BadParameter("give one of --value, --run, --length-from")
            if rationales is None:
                raise typer.BadParameter("--length-from needs --rationales: the teacher's kept rationales of 3 "
                                         "other tasks give the demonstrations (Eq. 8)")
            from raftlab.analysis.difficulty import (base_model_rationale_length, mean_of_task_demonstrations,
                                                     teacher_demonstrations)
            from raftlab.backends import get_backend, parse_backend_options
            from raftlab.tasks import get_task

            try:
                t = get_task(task)
                pool = teacher_demonstrations(rationales)
                examples = t.load("test", limit=questions, seed=0)
                value = base_model_rationale_length(get_backend(length_from, parse_backend_options(backend_option)), t,
                                                   examples, pool, k=k)
            except (KeyError, ValueError, FileNotFoundError) as exc:
                typer.echo(error_line(exc), err=True)
                raise typer.Exit(2) from None
            metric = metric or "length"
            if metric != "length":
                raise typer.BadParameter("--length-from provides the length metric; use --metric length")
            shown = ", ".join(d.task for d in mean_of_task_demonstrations(task, pool, seed=0))
            typer.echo(f"{task}: length = {value:.1f} words ({length_from}, mix-of-task prompting, {questions} "
                       f"questions x {k} samples; demonstrations: teacher rationales of {shown})", err=True)
        metrics = [metric] if metric else sorted(PUBLISHED_FITS)
        if value is None:
            raise typer.BadParameter("--value (or --run) is required")
        if metric is None and fit is not None:
            raise typer.BadParameter("--metric is required with --fit")
        results = []
        for m in metrics:
            try:
                pred = predict_gain(m, value, fit)
            except (ValueError, FileNotFoundError) as exc:
                typer.echo(error_line(exc), err=True)
                raise typer.Exit(2) from None
            f = pred.fit
            interval = (f" [95% PI {pred.interval.low:+.3f}, {pred.interval.high:+.3f}]"
                        if pred.interval is not None else "")
            typer.echo(f"{task}: ΔAcc ≈ {pred.delta_acc:+.4f}{interval} from {m} = {value:g} "
                       f"(fit {f.y} = {f.slope:g}·{f.x} {f.intercept:+g}, {f.source})")
            for warning in pred.warnings:
                typer.echo(f"warning: {warning}", err=True)
            results.append({"task": task, **pred.model_dump(mode="json")})
        if len(results) > 1:
            typer.echo("note: without --metric each published fit is applied to the same --value; "
                       "they are on different scales (length in words, acc_ft in [0, 1])", err=True)
        typer.echo(json.dumps(results if len(results) > 1 else results[0]))
