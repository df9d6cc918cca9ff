"""Collect what a report draws (:class:`ReportData`) from a run directory or an analysis result."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from raftlab import layout
from raftlab.corrupt import read_json
from raftlab.report.data import OLSFit, ReliabilityBin, ReportData, TaskSummary
from raftlab.report.rationales import add_rationales
from raftlab.report.records import latest_records, sample_outputs

#: Where the study's analysis stage saves its result (``AnalysisResult`` JSON), relative to the run directory.


def reliability_from_records(records: list[dict], n_bins: int = 10) -> list[ReliabilityBin]:
    """Reliability-diagram bins of one arm's eval records (vote-count binning when ``k`` is recorded)."""
    from raftlab.metrics import reliability_bins

    conf = [float(r["confidence"]) for r in records]
    correct = [bool(r["correct"]) for r in records]
    ks = {r.get("k") for r in records}
    k = ks.pop() if len(ks) == 1 and None not in ks else None
    bins = reliability_bins(conf, correct, n_bins=n_bins, k=k)
    return [ReliabilityBin(**row) for row in bins.to_dicts()]


def add_records(data: ReportData, run_dir: Path, samples_per_task: int = 3,
                stages: frozenset[str] | None = None) -> ReportData:
    """Output samples (and reliability bins the analysis did not provide) from ``RUN/eval/<arm>/<task>/*.jsonl``
    (only the eval stages in ``stages`` when given: a folder left by an earlier config is not this study's)."""
    for task, arms in layout.eval_dirs(run_dir).items():
        arms = {a: f for a, f in arms.items() if stages is None or layout.evaluation(a, task) in stages}
        records = {arm: latest_records(folder) for arm, folder in arms.items()}
        order = [a for a in data.arms if a in records] + [a for a in records if a not in data.arms]
        data.reliability.setdefault(task, {})
        for arm in order:
            if records[arm] and arm not in data.reliability[task]:
                data.reliability[task][arm] = reliability_from_records(records[arm])
        if samples_per_task:
            data.samples[task] = sample_outputs({a: records[a] for a in order}, n=samples_per_task)
    return data


def study_meta(run_dir: Path) -> dict[str, Any]:
    """Headline settings from ``RUN/study.yaml`` (written by ``raftlab study``), if present."""
    import yaml

    from raftlab.corrupt import CorruptFile, yaml_problem

    path = run_dir / "study.yaml"
    if not path.is_file():
        return {}
    fix = "delete it (the report then leaves out the study's settings)"
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        what = yaml_problem(exc) if isinstance(exc, yaml.YAMLError) else "not valid UTF-8"
        raise CorruptFile(f"{path}: {what}; {fix}") from None
    if not isinstance(cfg, dict):
        raise CorruptFile(f"{path}: not a YAML mapping; {fix}")
    return settings_meta(cfg)


def settings_meta(cfg: Any) -> dict[str, Any]:
    """The study settings the report shows, from a config mapping (or anything with ``.get``)."""
    ev, teacher, train = cfg.get("eval") or {}, cfg.get("teacher") or {}, cfg.get("train") or {}
    meta = {"study": cfg.get("name"), "student": cfg.get("model"), "teacher": teacher.get("backend"),
            "training": "LoRA" if train.get("lora") else "full finetuning",
            "eval": f"{ev.get('mode', 'sc')} k={ev.get('k')} T={ev.get('temperature')}", "seed": cfg.get("seed")}
    return {k: v for k, v in meta.items() if v is not None}


def add_info_gain(data: ReportData, run_dir: Path, stages: frozenset[str] | None = None) -> ReportData:
    """Information-gain curves saved by the study (``RUN/info_gain/<task>/curves.json``; only those of the stages in
    ``stages`` when given)."""
    for path in sorted(run_dir.glob(layout.INFO_GAIN_CURVES)):
        if stages is not None and layout.info_gain(path.parent.name) not in stages:
            continue
        saved = read_json(path, "delete it (the report then leaves out that task's information-gain curves)")
        curves = {str(k): [float(x) for x in v] for k, v in (saved.get("curves") or {}).items() if v}
        if curves:
            name = str(saved.get("task") or path.parent.name)
            data.info_gain[name] = curves
            data.info_gain_steps[name] = str(saved.get("step", "sentences"))
    return data


def report_data(source: Any, samples_per_task: int = 3, *, meta: dict[str, Any] | None = None,
                stages: frozenset[str] | None = None) -> ReportData:
    """:class:`ReportData` from a ReportData, a run directory, or a :mod:`raftlab.analysis` result.

    For a run directory the saved analysis (``RUN/analysis/analysis.json``) is used when present,
    otherwise the records are analysed now with :func:`raftlab.analysis.analyze_study`. ``meta`` (the study's
    settings, given by the study itself) replaces what ``RUN/study.yaml`` says; ``stages`` limits the eval and
    information-gain folders read to those stages.
    """
    if isinstance(source, ReportData):
        return source
    if isinstance(source, (str, Path)):
        run_dir = Path(source)
        if not (run_dir / layout.EVAL).is_dir():
            raise FileNotFoundError(f"{run_dir}: not a run directory (no eval/ folder with eval records)")
        saved = run_dir / layout.ANALYSIS_FILE
        if saved.is_file():  # written by the study's analysis stage
            from raftlab.analysis.models import FIX_ANALYSIS

            data = from_analysis(read_json(saved, FIX_ANALYSIS))
        else:
            from raftlab.analysis import analyze_study

            data = from_analysis(analyze_study(run_dir))
        data.title = f"raftlab study report: {run_dir.resolve().name}"
        data.meta.update(study_meta(run_dir) if meta is None else meta)
        add_info_gain(data, run_dir, stages)
        add_rationales(data, run_dir, stages)
        return add_records(data, run_dir, samples_per_task, stages)
    return from_analysis(source)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fit(f: Any) -> OLSFit:
    return OLSFit.model_validate(f.model_dump())


def _arm_rank(arm: str, order: list[str]) -> int:
    return order.index(arm) if arm in order else len(order)


def from_analysis(result: Any, arms: tuple[str, str] = ("ft", "raft")) -> ReportData:
    """Convert a :class:`raftlab.analysis.AnalysisResult` (or its JSON dict) into :class:`ReportData`.

    ``arms``: the (baseline, treatment) arm names the result's deltas compare.
    """
    from raftlab.analysis.four_arms import four_arm_rows
    from raftlab.analysis.headline import headline
    from raftlab.analysis.models import AnalysisResult

    if isinstance(result, dict):
        result = AnalysisResult.model_validate(result)
    arm_order: list[str] = []
    tasks = []
    for row in result.tasks:
        metrics = {arm: {k: float(v) for k, v in m.items() if _finite(v)} for arm, m in row.metrics.items()}
        d = row.delta
        if d is not None:  # the numbers the deltas were computed from
            metrics.setdefault(arms[0], {}).update(accuracy=d.acc_ft, ece=d.ece_ft)
            metrics.setdefault(arms[1], {}).update(accuracy=d.acc_raft, ece=d.ece_raft)
        arm_order += [a for a in metrics if a not in arm_order]
        tasks.append(TaskSummary(
            task=row.task, n=row.n or (d.n_ft if d else 0), metrics=metrics,
            delta_acc=d.delta_acc if d else None,
            delta_ece=d.delta_ece if d else None,
            difficulty={k: float(v) for k, v in row.difficulty.items() if _finite(v)},
            arm_deltas={arm: {"delta_acc": ad.delta_acc,
                              "delta_ece": ad.delta_ece}
                        for arm, ad in (getattr(row, "arm_deltas", None) or {}).items()},
            cost=dict(getattr(row, "cost", None) or {}),
            trustworthy=row.trustworthy, role=row.role, reasons=list(row.reasons), baselines=dict(row.baselines),
            invalid_policies=row.invalid_policies, training=dict(row.training), learned=dict(row.learned),
            caveats=list(row.caveats)))
    order = [a for a in arms if a in arm_order] + [a for a in arm_order if a not in arms]
    reliability = {row.task: {arm: [ReliabilityBin(**b) for b in bins] for arm, bins in
                              sorted(row.reliability.items(), key=lambda kv: _arm_rank(kv[0], order))}
                   for row in result.tasks if getattr(row, "reliability", None)}
    info_gain = getattr(result, "info_gain", None) or {}
    return ReportData(
        arms=order, tasks=tasks, fit=_fit(result.fit) if result.fit is not None else None, reliability=reliability,
        difficulty_fits=[_fit(f) for f in result.difficulty_fits],
        other_fit=_fit(result.other_fit) if result.other_fit is not None else None,
        other_difficulty_fits=[_fit(f) for f in result.other_difficulty_fits],
        info_gain={t: dict(c) for t, c in info_gain.items()} if isinstance(info_gain, dict) else {},
        learning_curves={row.task: list(row.sizes) for row in result.tasks if row.sizes},
        meta={k: v for k, v in (result.settings or {}).items() if isinstance(v, (str, int, float))},
        notes=list(result.notes), four_arms=four_arm_rows(result.tasks), headline=headline(result))
