"""Teacher attempts per second with SmolLM2 as its own gold-filtered teacher on 64 SST-2 training examples: the same
model and prompts, prompts sent one batch of ``--batch-sizes`` at a time (a study's ``teacher.batch_size``; 4 was the
old fixed value). One attempt per example (``max_retries`` 1), T = 0.7, up to 256 new tokens. Writes a JSON with the
machine, versions and command.

    .venv/bin/python benchmarks/bench_teacher.py --batch-sizes 4 32 --out benchmarks/results/teacher_batching.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 32])
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import torch
    import transformers

    from raftlab.backends import get_backend
    from raftlab.backends.base import SamplingParams
    from raftlab.machine import describe_machine
    from raftlab.rationales import generate_rationales
    from raftlab.tasks import get_task

    task = get_task("sst2")
    examples = task.load("train", limit=args.examples, seed=0)
    backend = get_backend("hf:smollm2")
    backend.generate([task.teacher_prompt(examples[0], "A", 3)], SamplingParams(max_new_tokens=8))  # warm-up
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.batch_sizes:
            t0 = time.perf_counter()
            stats = generate_rationales(backend, task, examples, Path(tmp) / f"b{size}.sqlite", max_retries=1,
                                        concurrency=size, temperature=0.7, max_new_tokens=256, progress=False)
            seconds = time.perf_counter() - t0
            rows.append({"batch_size": size, "attempts": stats["attempts"], "seconds": round(seconds, 2),
                         "attempts_per_s": round(stats["attempts"] / seconds, 3),
                         "teacher_tokens": stats["teacher_tokens"], "kept": stats["kept"],
                         "rejections": stats["rejections"]})
            print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["attempts_per_s"]
    for row in rows:
        row["speedup_vs_first"] = round(row["attempts_per_s"] / base, 2)
    result = {"benchmark": "teacher_batching", "date": time.strftime("%Y-%m-%d"),
              "command": shlex.join([sys.executable, *sys.argv]), "machine": describe_machine("cpu"),
              "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
              "task": "sst2", "examples": len(examples), "rows": rows}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({r["batch_size"]: r["speedup_vs_first"] for r in rows}))


if __name__ == "__main__":
    main()
