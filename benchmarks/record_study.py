"""Record a finished study run as a committed result: the machine, versions, command and config, each stage's wall
time, the teacher's kept rate, how each arm's training stopped and its tokens per second, each arm's accuracy and
ECE, and RAFT vs FT with CIs and the artifact-check verdict per task (from the run's manifest, stats, training
summaries and analysis.json). ``wall_seconds`` runs from the first stage's start to the last one's end and
``stage_seconds_total`` sums the stages; where the wall exceeds that sum by more than five minutes the run was
resumed (``resumed: true``) and its headline is the sum. The machine and versions are this process's (record on
the machine that ran the study); ``--command`` is the study's command line, and ``recorded_with`` this one's. Writes
``benchmarks/results/study_<run folder>.json`` (``--out``; ``benchmarks/results_io.py``). ``--against`` names the
result of a run of the same study done another way (e.g. one stage at a time): its ratios then compare the two,
the time (wall, or stage time where resumed) and each kind of stage's seconds.

    .venv/bin/python benchmarks/record_study.py runs/real --command "raftlab study --preset real" \
        --out benchmarks/results/real_preset_seed0.json
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path

from results_io import add_out_argument, command_line, environment, headline, ratio, slug, write_result


#: A run whose wall clock exceeds the sum of its stage times by more than this was resumed (or had stages rerun
#: later): its headline is then the sum of its stage times, the time of the same stages run at once (a run's
#: wall is its stage times plus about 15 s of process starts).
RESUMED_GAP_S = 300


def _stage_memory(manifest: dict) -> dict[str, int]:
    """Each stage's peak resident memory (MB, from the run's manifest)."""
    return {name: s["peak_rss_mb"] for name, s in manifest["stages"].items() if s.get("peak_rss_mb") is not None}


def _stage_times(manifest: dict) -> tuple[dict[str, float], float]:
    stages = manifest["stages"]
    seconds = {name: round(s.get("seconds") or 0.0, 1) for name, s in stages.items()}
    starts = [datetime.fromisoformat(s["started"]) for s in stages.values() if s.get("started")]
    ends = [datetime.fromisoformat(s["finished"]) for s in stages.values() if s.get("finished")]
    wall = (max(ends) - min(starts)).total_seconds() if starts and ends else sum(seconds.values())
    return seconds, round(wall, 1)


def _training_throughput(run: Path, task: str) -> dict[str, dict]:
    """Per finetuned arm: tokens trained (prompt and target, padding excluded), seconds of the Trainer's loop
    (checkpoints saved during it included, model loading excluded) and their ratio, from the arm's
    ``train_summary.json``. An arm resumed from a checkpoint counts only its last part's seconds: record runs
    that trained without interruption."""
    out = {}
    for summary in sorted((run / "train").glob(f"*/{task}/model/train_summary.json")):
        s = json.loads(summary.read_text())
        if s.get("trained_tokens") and s.get("train_seconds"):
            out[summary.parts[-4]] = {"trained_tokens": s["trained_tokens"], "train_seconds": s["train_seconds"],
                                      "tokens_per_second": round(s["trained_tokens"] / s["train_seconds"], 1)}
    return out


def _task_record(row: dict, run: Path) -> dict:
    task = row["task"]
    stats_file = run / "rationales" / task / "stats.json"
    stats = json.loads(stats_file.read_text()) if stats_file.is_file() else {}
    judge_file = run / "judge" / task / "judge.json"
    judge = json.loads(judge_file.read_text()) if judge_file.is_file() else None
    delta = row.get("delta") or {}
    return {
        "task": task, "test_questions": row.get("n"),
        "teacher": {k: stats.get(k) for k in ("examples_attempted", "kept", "attempts", "kept_ratio",
                                              "rejections", "rationale_length_mean")},
        "judge": None if judge is None else {k: judge.get(k) for k in ("helpful", "unhelpful", "unknown", "judged")},
        "arms": {arm: {"accuracy": m.get("accuracy"), "ece": m.get("ece")} for arm, m in row["metrics"].items()},
        "training": row.get("training"),
        "throughput": _training_throughput(run, task),
        "raft_vs_ft": {"delta_acc": delta.get("delta_acc"), "delta_ece": delta.get("delta_ece")},
        "trustworthy": row.get("trustworthy"), "reasons": row.get("reasons"), "caveats": row.get("caveats"),
        "baselines": row.get("baselines"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--command", required=True, help="the command that made the run")
    parser.add_argument("--against", type=Path, help="a recorded result of the same study run another way: "
                        "adds ratios of its times to this run's")
    add_out_argument(parser, "benchmarks/results/study_<run folder>.json")
    args = parser.parse_args()

    import yaml

    run = args.run
    manifest = json.loads((run / "manifest.json").read_text())
    analysis = json.loads((run / "analysis" / "analysis.json").read_text())
    seconds, wall = _stage_times(manifest)
    total = round(sum(seconds.values()), 1)
    common = environment("cpu") | {"command": args.command, "recorded_with": command_line()}
    result = {"config": yaml.safe_load((run / "study.yaml").read_text()),
              "wall_seconds": wall, "stage_seconds_total": total, "resumed": wall - total > RESUMED_GAP_S,
              "stage_seconds": seconds, "stage_peak_rss_mb": _stage_memory(manifest),
              "tasks": [_task_record(row, run) for row in analysis["tasks"]],
              "fit": analysis.get("fit"), "fit_all_tasks": analysis.get("other_fit"), "notes": analysis.get("notes")}
    result.update(summarize(result))
    if args.against:
        baseline = json.loads(args.against.read_text())
        result["against"] = args.against.name
        result["ratios"] = compare(baseline, result, args.against.name)
    print(json.dumps({"wall_seconds": wall, "tasks": [t["task"] for t in result["tasks"]]}))
    write_result("study_run", result, name=slug("study", run.resolve().name), out=args.out, save=not args.no_save,
                 common=common)


def summarize(result: dict) -> dict:
    """``headline``: the run's wall time (its stage time when it was resumed) and each task's ΔAcc and ΔECE (RAFT
    vs FT); ratios only with ``--against`` (:func:`compare`)."""
    if result.get("resumed"):  # the wall clock spans the pause: the stage time is the run's time
        heads = [headline("stage time (resumed run)", round(result["stage_seconds_total"] / 60, 1), "min")]
    else:
        heads = [headline("wall", round(result["wall_seconds"] / 60, 1), "min")]
    for task in result["tasks"]:
        for metric, label in (("delta_acc", "ΔAcc"), ("delta_ece", "ΔECE")):
            value = (task.get("raft_vs_ft") or {}).get(metric) or {}
            if value.get("value") is not None:
                heads.append(headline(f"{task['task']} {label}", round(value["value"], 3), ""))
    return {"headline": heads, "ratios": []}


def run_time(result: dict) -> float:
    """A recorded run's time: its wall, or its stage time where it was resumed."""
    return result["stage_seconds_total"] if result.get("resumed") else result["wall_seconds"]


def stage_kind(name: str) -> str:
    """The kind of work a stage does, as docs/study.md groups them."""
    if name.startswith(("eval/icl_rationale", "eval/raft")):
        return "CoT evaluations (② and RAFT)"
    if name.startswith("eval/"):
        return "label evaluations (① and FT)"
    return {"train": "training", "rationales": "teacher"}.get(name.split("/")[0], name.split("/")[0])


def compare(baseline: dict, result: dict, name: str) -> list[dict]:
    """Ratios of ``baseline``'s times to ``result``'s (time: > 1 when this run is faster) and of this run's stage
    seconds to the baseline's, in all and per kind of stage (the stages both ran)."""
    ratios = [ratio(f"time: {name} / this run", run_time(baseline) / run_time(result))]
    mine, theirs = result["stage_seconds"], baseline["stage_seconds"]
    kinds: dict[str, list[float]] = {}
    for stage in (s for s in mine if s in theirs):
        pair = kinds.setdefault(stage_kind(stage), [0.0, 0.0])
        pair[0] += mine[stage]
        pair[1] += theirs[stage]
    ratios.append(ratio(f"stage seconds, all stages: this run / {name}",
                        sum(a for a, _ in kinds.values()) / sum(b for _, b in kinds.values())))
    for kind, (a, b) in sorted(kinds.items(), key=lambda kv: -kv[1][1]):
        if b > 10:
            ratios.append(ratio(f"stage seconds, {kind}: this run / {name}", a / b))
    return ratios


if __name__ == "__main__":
    main()
