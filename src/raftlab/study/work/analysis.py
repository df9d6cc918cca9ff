"""The ``analysis`` stage: ΔAcc/ΔECE with bootstrap CIs per task, the OLS fit and the difficulty fits, over the
folders of this study's planned stages."""

from __future__ import annotations

from pathlib import Path

from raftlab import layout
from raftlab.corrupt import read_json
from raftlab.study.config import StudyConfig
from raftlab.study.work.common import read_examples
from raftlab.study.work.outputs import AnalysisOutput


def rationale_lengths(cfg: StudyConfig, run_dir: Path) -> dict[str, dict[str, float]]:
    """``{task: {"teacher_rationale_length": ...}}``: mean kept-rationale length in student tokens (raftlab's
    variant of the paper's length metrics, which measure rationales a model *generates* on test questions)."""
    from raftlab.analysis import rationale_length_by_task
    from raftlab.models import load_tokenizer

    by_task = {}
    for spec in cfg.tasks:
        path = run_dir / layout.rationales(spec.name) / layout.RATIONALES_FILE
        if path.is_file():
            by_task[spec.name] = [e.rationale for e in read_examples(path)]
    return rationale_length_by_task({t: r for t, r in by_task.items() if any(r)}, load_tokenizer(cfg.model))


def generated_lengths(folder: Path) -> float | None:
    """Mean generated-rationale length (words) of the samples in an eval folder's records (None: no records)."""
    from raftlab.analysis import generated_rationale_length
    from raftlab.analysis.records import read_records

    try:
        samples = [s for r in read_records(folder) for s in r.get("samples") or []]
    except (OSError, ValueError):
        return None
    return generated_rationale_length(samples) if samples else None


def analyze(cfg: StudyConfig, run_dir: Path, out: Path, stages: frozenset[str]) -> AnalysisOutput:
    """ΔAcc/ΔECE with bootstrap CIs per task, the OLS fit, and difficulty fits (raftlab.analysis);
    the untrained arms ① and ② are analysed with the others (the four-arm contrasts of Fig. 4). Only the folders
    of ``stages`` (this study's planned stages) are read: a folder an earlier config left behind is not. The
    learning curve (``train_sizes``) comes from the sized eval stages among them."""
    from raftlab.analysis import analyze_study, discover_sizes

    arms = [*layout.PROMPT_ARMS, *cfg.arms]
    runs = {spec.name: {arm: run_dir / layout.evaluation(arm, spec.name) for arm in arms
                        if layout.evaluation(arm, spec.name) in stages} for spec in cfg.tasks}
    difficulty = rationale_lengths(cfg, run_dir)
    for spec in cfg.tasks:
        folder = run_dir / layout.mean_of_task(spec.name)
        if cfg.mean_of_task and layout.mean_of_task(spec.name) in stages:
            row = difficulty.setdefault(spec.name, {})
            metrics = read_json(folder / "metrics.json", f"delete {folder} and rerun the study to recompute it")
            row["mean_of_task_accuracy"] = float(metrics["accuracy"])
            length = generated_lengths(folder)  # paper metric 2: what the untrained model writes (Eq. 8)
            if length is not None:
                row["length"] = length
        reference = (generated_lengths(run_dir / layout.reference(spec.name))  # paper metric 1
                     if layout.reference(spec.name) in stages else None)
        if reference is not None:
            difficulty.setdefault(spec.name, {})["reference_length"] = reference
    result = analyze_study(runs, difficulty=difficulty, seed=cfg.seed, sizes=discover_sizes(run_dir, stages),
                           validation=[spec.name for spec in cfg.tasks if spec.role == "validation"])
    result.save(str(out / "analysis.json"))
    return AnalysisOutput("analysis.json", folder=out)
