"""``analyze_study``: per-task RAFT-vs-FT deltas, the ΔECE-vs-ΔAcc fit, and difficulty fits."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Collection, Mapping

from raftlab import layout
from raftlab.analysis.deltas import task_deltas
from raftlab.analysis.difficulty import difficulty_fits
from raftlab.analysis.four_arms import compute_contrasts
from raftlab.analysis.models import AnalysisResult, OLSFit, TaskRow, ValidationPoint
from raftlab.analysis.ols import fit_ols
from raftlab.analysis.prediction import prediction_interval
from raftlab.analysis.caveats import task_caveats
from raftlab.analysis.checks import (
    THRESHOLDS, ArmContext, accuracy_interval, arm_checks, baselines, chance_bar, is_finetuned, learned,
    learning_check, verdict,
)
from raftlab.analysis.sizes import SizeRuns, discover_sizes, learning_curve
from raftlab.inference.evaluate import cost_of
from raftlab.analysis.records import INVALID_POLICIES, EvalRecords, RecordError, read_records
from raftlab.metrics import reliability_bins, summarize

Runs = Mapping[str, Mapping[str, "str | Path | EvalRecords"]]


def discover_runs(run_dir: str | Path) -> dict[str, dict[str, Path]]:
    """``task -> arm -> folder`` of a run directory's eval records (:func:`raftlab.layout.eval_dirs`); an error
    when it has no eval folder."""
    if not (Path(run_dir) / layout.EVAL).is_dir():
        raise FileNotFoundError(f"{run_dir}: not a run directory (no {layout.EVAL}/ folder)")
    return layout.eval_dirs(run_dir)


def _clean(metrics: dict[str, float]) -> dict[str, int | float | None]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}


def _load(src: str | Path | EvalRecords, invalid: str) -> tuple[EvalRecords, str, list[dict] | None]:
    """The scored records, their source, and the raw record dicts (None for in-memory EvalRecords)."""
    if isinstance(src, EvalRecords):
        return src, src.source, None
    raw = read_records(src)
    return EvalRecords.from_dicts(raw, source=str(src), invalid=invalid), str(src), raw


def _policy_metrics(raw: list[dict], n_bins: int) -> dict[str, dict[str, float | int | None]]:
    out = {}
    for policy in INVALID_POLICIES:
        try:
            rec = EvalRecords.from_dicts(raw, invalid=policy)
        except RecordError:  # nothing answered, or fields the policy needs are missing
            continue
        m = summarize(rec.confidence, rec.correct, k=rec.k, n_bins=n_bins)
        out[policy] = _clean({"accuracy": float(m["accuracy"]), "ece": float(m["ece"]), "n": len(rec)})
    return out


def _learning(row: TaskRow, records: Mapping[str, EvalRecords], n_boot: int, seed: int, alpha: float) -> None:
    """Which finetuned arms learned (accuracy above majority class / chance beyond its CI), and the task's
    ``no_arm_learned`` check."""
    bar = chance_bar(row.baselines)
    trained = {arm: accuracy_interval(rec.correct, n_boot, seed, alpha) for arm, rec in records.items()
               if is_finetuned(arm)}
    if bar is None or not trained:
        return
    row.learned = {arm: learned(ci, bar) for arm, ci in trained.items()}
    row.checks.append(learning_check(trained, bar))


def _fits(compared: list[TaskRow], task_set: str, flagged: list[str]
          ) -> tuple[OLSFit | None, list[OLSFit], list[str]]:
    """The ΔECE-vs-ΔAcc fit and the difficulty fits over ``task_set`` ("all" compared tasks or "trustworthy"
    ones), each labelled with its task set; and notes on missing fits."""
    rows = [r for r in compared if task_set == "all" or r.trustworthy]
    tag = "" if not flagged else f" ({task_set} tasks)"
    left_out = [] if task_set == "all" else flagged
    label = {"task_set": task_set, "left_out": left_out}
    fit, notes = None, []
    try:
        fit = fit_ols([r.delta.delta_acc.value for r in rows], [r.delta.delta_ece.value for r in rows],
                      x_name="delta_acc", y_name="delta_ece", labels=[r.task for r in rows]).model_copy(update=label)
    except ValueError as exc:
        notes.append(f"no ΔECE-vs-ΔAcc fit{tag}: {exc}")
    d_fits, d_notes = difficulty_fits(rows)
    return fit, [f.model_copy(update=label) for f in d_fits], notes + [n + tag for n in d_notes]


def _validate(row: TaskRow, fit: OLSFit | None, alpha: float) -> ValidationPoint | None:
    """A validation task's observed ΔECE against ``fit``'s prediction at its ΔAcc (None without a fit)."""
    if fit is None or fit.x != "delta_acc":
        return None
    x, y = row.delta.delta_acc.value, row.delta.delta_ece.value
    interval = prediction_interval(fit, x, alpha)
    return ValidationPoint(task=row.task, delta_acc=x, delta_ece=y, predicted_delta_ece=fit.predict(x),
                           interval=interval,
                           inside=None if interval is None else interval.low <= y <= interval.high)


def analyze_study(runs: Runs | str | Path, difficulty: Mapping[str, Mapping[str, float]] | None = None,
                  n_boot: int = 1000, seed: int = 0, alpha: float = 0.05, n_bins: int = 10,
                  baseline: str = "ft", treatment: str = "raft", invalid: str = "vote",
                  include_flagged: bool = False, sizes: SizeRuns | None = None,
                  validation: Collection[str] = ()) -> AnalysisResult:
    """Analyse a study given ``{task: {"ft": records, "raft": records, ...}}`` (paths or EvalRecords) or a run dir.

    Per task: every arm's metrics (:func:`raftlab.metrics.summarize`), ΔAcc/ΔECE of
    ``treatment`` over ``baseline`` with bootstrap CIs (and of any further arm over the
    baseline in ``arm_deltas``), and difficulty metrics (``difficulty[task]``, plus ``acc_ft``,
    the baseline's accuracy, named ``acc_<baseline>``). With other arm names (e.g. label vs
    rationale prompting) the ``*_ft``/``*_raft`` fields of the deltas hold baseline/treatment.
    Over tasks: the OLS fit ΔECE = α·ΔAcc + β with Pearson r and p, and fits of ΔAcc and ΔECE
    on each difficulty metric. Fits need 3 or more tasks; missing fits are explained in ``notes``.

    Records read from files also get the artifact checks (:mod:`raftlab.analysis.checks`, including whether any
    finetuned arm learned beyond majority class / chance), the majority-class and chance baselines, their metrics
    under every invalid-answer policy (``invalid`` picks the policy of the main numbers), how each arm's training
    ended, and the caveats on ΔAcc that follow from both (:mod:`raftlab.analysis.caveats`). A task whose compared
    arms (or whose finetuned arms together) fail a check is *not trustworthy* and is left out of ``fit`` and
    ``difficulty_fits`` unless ``include_flagged``. The paper fits all its tasks, so whenever a task is flagged
    ``other_fit`` and ``other_difficulty_fits`` hold the same fits over the other task set.

    ``sizes`` (found in a run directory's ``sizes/`` when ``runs`` is one) gives each task's learning curve
    (``TaskRow.sizes``): the deltas of the arms trained on each subset, then the full-size delta.

    Tasks named in ``validation`` (the paper's SUBJ and CoinFlip) are analysed like the others but left out of
    every across-task fit; ``AnalysisResult.validation`` sets each one's observed ΔECE beside the main fit's
    prediction at its ΔAcc, with the 95% prediction interval.
    """
    if isinstance(runs, (str, Path)):
        sizes = discover_sizes(runs) if sizes is None else sizes
        runs = discover_runs(runs)
    sizes = sizes or {}
    difficulty = difficulty or {}
    rows, notes = [], []
    for task in sorted(runs):
        arms = runs[task]
        full = {arm: _load(src, invalid) for arm, src in arms.items()}
        loaded = {arm: (rec, s) for arm, (rec, s, _) in full.items()}
        row = TaskRow(task=task, sources={arm: s for arm, (_, s) in loaded.items()},
                      role="validation" if task in validation else "fit",
                      difficulty={str(k): float(v) for k, v in (difficulty.get(task) or {}).items()})
        for arm, (_, source, raw) in full.items():
            if raw is None:
                continue
            ctx = ArmContext.of_folder(source) if Path(source).is_dir() else ArmContext()
            row.checks += arm_checks(arm, raw, ctx)
            row.cost[arm] = {**cost_of(raw), **ctx.cost()}
            if ctx.training():
                row.training[arm] = ctx.training()
            row.invalid_policies[arm] = _policy_metrics(raw, n_bins)
            row.baselines = row.baselines or baselines(raw)
        _learning(row, {arm: rec for arm, (rec, _, raw) in full.items() if raw is not None}, n_boot, seed, alpha)
        row.trustworthy, row.reasons = verdict(row.checks, (baseline, treatment))
        for arm, (rec, source) in loaded.items():
            row.metrics[arm] = _clean(summarize(rec.confidence, rec.correct, k=rec.k, n_bins=n_bins))
            prob = Path(source) / layout.DIRECT_PROB
            if Path(source).is_dir() and prob.is_dir():
                scored, _, _ = _load(prob, invalid)
                row.token_prob[arm] = _clean(summarize(scored.confidence, scored.correct, k=scored.k,
                                                       n_bins=n_bins))
            row.reliability[arm] = reliability_bins(rec.confidence, rec.correct, n_bins=n_bins, k=rec.k).to_dicts()
        if baseline in loaded:
            base = loaded[baseline][0]
            row.n = len(base)
            row.difficulty.setdefault(f"acc_{baseline}", float(base.correct.mean()))
            for arm, (rec, _) in loaded.items():
                if arm == baseline:
                    continue
                delta = task_deltas(base, rec, n_boot=n_boot, seed=seed, alpha=alpha, task=task)
                if arm == treatment:
                    row.delta = delta
                else:
                    row.arm_deltas[arm] = delta
        row.contrasts = compute_contrasts(
            {arm: rec for arm, (rec, _) in loaded.items()},
            lambda b, a, task: task_deltas(b, a, n_boot=n_boot, seed=seed, alpha=alpha, task=task), task)
        if task in sizes:
            row.sizes, size_notes = learning_curve(
                task, sizes[task], row.delta, lambda b, a: task_deltas(
                    _load(b, invalid)[0], _load(a, invalid)[0], n_boot=n_boot, seed=seed, alpha=alpha, task=task),
                baseline, treatment)
            notes += size_notes
        if row.delta is not None:
            row.caveats = task_caveats(row.training, row.learned, (baseline, treatment))
        else:
            notes.append(f"task {task}: no {baseline!r} and {treatment!r} records to compare (arms: {sorted(arms)})")
        rows.append(row)
    unknown = sorted(set(validation) - set(runs))
    if unknown:
        notes.append(f"validation tasks without records: {', '.join(unknown)}")
    compared = [r for r in rows if r.delta is not None and r.role == "fit"]
    if any(r.role == "validation" for r in rows):
        notes.append("validation tasks, left out of every across-task fit and checked against it: "
                     + ", ".join(r.task for r in rows if r.role == "validation"))
    flagged = [r.task for r in compared if not r.trustworthy]
    for r in compared:
        if not r.trustworthy:
            notes.append(f"task {r.task} is not trustworthy ({'; '.join(r.reasons)}); "
                         + ("kept in the main fits as asked, left out of the trustworthy-only fits" if include_flagged
                            else "left out of the main fits, kept in the all-tasks fits (the paper fits every task)"))
    main = "all" if include_flagged or not flagged else "trustworthy"
    fit, d_fits, fit_notes = _fits(compared, main, flagged)
    other_fit, other_d_fits, other_notes = (_fits(compared, "trustworthy" if main == "all" else "all", flagged)
                                            if flagged else (None, [], []))
    checked = [_validate(r, fit, alpha) for r in rows if r.role == "validation" and r.delta is not None]
    return AnalysisResult(
        tasks=rows, validation=[v for v in checked if v is not None], fit=fit, difficulty_fits=d_fits,
        other_fit=other_fit, other_difficulty_fits=other_d_fits,
        notes=notes + fit_notes + other_notes,
        settings={"n_boot": n_boot, "seed": seed, "alpha": alpha, "n_bins": n_bins, "baseline": baseline,
                  "treatment": treatment, "invalid_policy": invalid, "include_flagged": include_flagged,
                  "check_thresholds": THRESHOLDS,
                  "delta_definitions": {"delta_acc": "Acc_RAFT - Acc_FT", "delta_ece": "-(ECE_RAFT - ECE_FT)"}},
    )
