"""Which real tasks does a label-only finetuned SmolLM2-135M learn on a CPU budget? Learning curves per task.

Before a real-task preset is chosen, each candidate task's learning curve is measured with the preset's recipe and
nothing else: a seeded random subset of its training split of each size, label-only full finetuning (``raftlab
train --objective label --full``, the preset's lr, batch and max length, ``--epochs``), then self-consistency over
the direct prompt (k = 4, T = 0.8) on the seeded 250 test questions the study uses. A task counts as learned when
the accuracy's 95% bootstrap interval lies above its majority class (the study's ``no_arm_learned`` rule). The
teacher and RAFT are left out on purpose: the choice looks at whether the student can learn the task at all, never
at which way rationales move it. Every train and eval runs as its own ``raftlab`` process, as in a study.

    RAFTLAB_DATA_DIR=../shared/datasets .venv/bin/python benchmarks/probe_tasks.py \\
        --tasks trec agnews arc_easy --sizes 100 250

Writes ``benchmarks/results/task_probe_<model>.json`` (per task and size: accuracy with its CI, majority class,
learned or not, training seconds and tokens, eval seconds). Each probe is also appended, as it finishes, to
``--records`` (a JSONL file): a rerun with the same settings reuses the probes found there and runs the rest, so a
probe stopped by a crash (a full disk, Ctrl-C) loses only the probe it was running.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_io import add_out_argument, headline, result_path, write_result

RAFTLAB = [sys.executable, "-m", "raftlab.cli.main"]


def run(argv: list[str]) -> float:
    """Run one raftlab command (quiet); returns its wall seconds; stops the probe with its output if it fails."""
    start = time.perf_counter()
    done = subprocess.run([*RAFTLAB, "-q", *argv], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"raftlab {' '.join(argv)} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return time.perf_counter() - start


def accuracy_with_ci(records: Path, seed: int) -> dict[str, object]:
    """Accuracy, its 95% percentile-bootstrap interval, the majority class and whether the accuracy is above the
    study's bar (majority class or chance, the higher) beyond its interval, from one eval's records."""
    from raftlab.analysis.checks import accuracy_interval, baselines, chance_bar, learned

    rows = [json.loads(line) for line in records.read_text(encoding="utf-8").splitlines() if line.strip()]
    ci = accuracy_interval([bool(r["correct"]) for r in rows], n_boot=1000, seed=seed, alpha=0.05)
    base = baselines(rows)
    return {"n": len(rows), "accuracy": round(ci.value, 4), "ci": [round(ci.low, 4), round(ci.high, 4)],
            "majority_class": round(base["majority_class"], 4), "learned": learned(ci, chance_bar(base))}


SETTINGS = ("model", "epochs", "lr", "batch_size", "max_length", "test_limit", "seed")


def settings(args: argparse.Namespace) -> dict[str, object]:
    return {k: getattr(args, k) for k in SETTINGS}


def done_probes(records: Path, args: argparse.Namespace) -> dict[tuple[str, int], dict[str, object]]:
    """The probes of ``records`` made with these settings, by (task, size)."""
    if not records.is_file():
        return {}
    rows = [json.loads(line) for line in records.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {(r["task"], r["train_size"]): r for r in rows if r.get("settings") == settings(args)}


def probe(task: str, size: int, args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    """One task at one training-set size: export, train, evaluate."""
    data, model, evals = tmp / f"{task}_{size}.jsonl", tmp / f"{task}_{size}_model", tmp / f"{task}_{size}_eval"
    run(["data", "export", task, "--split", "train", "--limit", str(size), "--seed", str(args.seed), "--out", str(data)])
    train_s = run(["train", "--model", args.model, "--data", str(data), "--objective", "label", "--task", task,
                   "--out", str(model), "--full", "--lr", str(args.lr), "--epochs", str(args.epochs),
                   "--batch-size", str(args.batch_size), "--max-length", str(args.max_length),
                   "--dev-size", "0", "--seed", str(args.seed), "--no-resume"])
    eval_s = run(["eval", "--model", str(model), "--task", task, "--mode", "sc", "--prompt-mode", "direct",
                  "--k", "4", "--temperature", "0.8", "--limit", str(args.test_limit), "--seed", str(args.seed),
                  "--batch-size", "10", "--out", str(evals)])
    summary = json.loads((model / "train_summary.json").read_text(encoding="utf-8"))
    shutil.rmtree(model)  # a full-finetuned model and its checkpoints take about 2 GB: keep only the numbers
    out = {"task": task, "train_size": size, "settings": settings(args), **accuracy_with_ci(evals / "records.jsonl", args.seed),
           "train_seconds": round(summary["train_seconds"], 1), "train_wall_seconds": round(train_s, 1),
           "trained_tokens": summary["trained_tokens"], "steps": summary["global_step"],
           "final_train_loss": round(summary["train_loss"], 4), "eval_wall_seconds": round(eval_s, 1),
           "date": time.strftime("%Y-%m-%d")}
    with args.records.open("a", encoding="utf-8") as f:
        f.write(json.dumps(out) + "\n")
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", required=True, help="candidate task names (see `raftlab tasks`)")
    parser.add_argument("--sizes", nargs="+", type=int, default=[100, 250], help="training-set sizes")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--test-limit", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--records", type=Path, default=None,
                        help="JSONL of finished probes, reused by a rerun (default: next to the result file)")
    add_out_argument(parser, "benchmarks/results/task_probe_<model>.json")
    args = parser.parse_args()
    if not os.environ.get("RAFTLAB_DATA_DIR"):
        sys.exit("set RAFTLAB_DATA_DIR to the datasets folder (e.g. ../shared/datasets)")
    name = f"task_probe_{args.model}"
    args.records = args.records or (args.out or result_path(name)).with_suffix(".jsonl")
    found = done_probes(args.records, args)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [found.get((task, size)) or probe(task, size, args, Path(tmp))
                for task in args.tasks for size in sorted(args.sizes)]
    learned = sorted({r["task"] for r in rows if r["learned"]})
    numbers = {"settings": settings(args), "probes": rows,
               "reused_probes": sum((r["task"], r["train_size"]) in found for r in rows),
               "learned_tasks": learned, "wall_seconds": round(time.perf_counter() - start, 1),
               "headline": [headline("tasks learned", len(learned), f"of {len(args.tasks)}")], "ratios": []}
    write_result("task_probe", numbers, name=name, out=args.out, save=not args.no_save)


if __name__ == "__main__":
    main()
