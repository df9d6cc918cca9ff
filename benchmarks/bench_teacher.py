"""Teacher attempts per second with SmolLM2 as its own gold-filtered teacher on 64 SST-2 training examples: the same
model, prompts and gold filter, with up to ``--max-retries`` attempts per example, under each ``--configs`` entry
``B:S``: B prompts per batched ``generate`` call (a study's ``teacher.batch_size``) and S attempts drawn as n
samples of one prompt (``teacher.samples_per_prompt``). ``4:1`` is the old fixed study setting (4 prompts, one
sample each), the baseline of the speed-ups. T = 0.7, up to 256 new tokens. Counts only recorded attempts (samples
after an example's first kept one are discarded and not counted). Writes a JSON with the machine, versions and
command.

    .venv/bin/python benchmarks/bench_teacher.py --configs 4:1 32:1 32:4 --out benchmarks/results/teacher_batching.json
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
    parser.add_argument("--configs", nargs="+", default=["4:1", "32:1", "32:4"], help="B:S pairs")
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--max-retries", type=int, default=4)
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
        for config in args.configs:
            size, samples = map(int, config.split(":"))
            backend.batch_size = size * samples  # rows per forward, as a study sizes its hf teacher
            t0 = time.perf_counter()
            stats = generate_rationales(backend, task, examples, Path(tmp) / f"b{size}s{samples}.sqlite",
                                        max_retries=args.max_retries, concurrency=size, samples_per_prompt=samples,
                                        temperature=0.7, max_new_tokens=256, progress=False)
            seconds = time.perf_counter() - t0
            rows.append({"batch_size": size, "samples_per_prompt": samples, "max_retries": args.max_retries,
                         "attempts": stats["attempts"], "seconds": round(seconds, 2),
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
    print(json.dumps({f"{r['batch_size']}:{r['samples_per_prompt']}": r["speedup_vs_first"] for r in rows}))


if __name__ == "__main__":
    main()
