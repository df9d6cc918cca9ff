"""Teacher attempts per second with SmolLM2 as its own gold-filtered teacher on 64 SST-2 training examples: the same
model, prompts and gold filter, with up to ``--max-retries`` attempts per example, under each ``--configs`` entry
``B:S``: B prompts per batched ``generate`` call (a study's ``teacher.batch_size``) and S attempts drawn as n
samples of one prompt (``teacher.samples_per_prompt``); a third field ``full`` lets the teacher write past its
first answer sentence (a pattern that never matches replaces the stop at the answer: the behaviour before the
teacher stopped there). ``4:1:full`` is the old study setting (4 prompts, one sample each, whole outputs), the
baseline of the speed-ups. T = 0.7, up to 256 new tokens. Counts only recorded attempts (samples
after an example's first kept one are discarded and not counted). Writes the result as JSON with the machine,
versions and command (``benchmarks/results_io.py``) to ``benchmarks/results/teacher_batching.json`` (``--out``).

    .venv/bin/python benchmarks/bench_teacher.py --configs 4:1:full 4:1 64:4 --kv-cache-mb 2048 \
        --out benchmarks/results/teacher_batching.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from results_io import add_out_argument, headline, ratio, write_result

#: A stop pattern that never matches: the teacher writes its whole output (the old behaviour).
NEVER = r"(?!)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["4:1:full", "4:1", "64:4"],
                        help="B:S or B:S:full")
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--max-retries", type=int, default=4)
    parser.add_argument("--kv-cache-mb", type=int, default=None, help="the hf backend's KV-cache cap (default: its own)")
    add_out_argument(parser, "benchmarks/results/teacher_batching.json")
    args = parser.parse_args()

    from raftlab.backends import get_backend
    from raftlab.backends.base import SamplingParams
    from raftlab.rationales import generate_rationales
    from raftlab.tasks import get_task

    task = get_task("sst2")
    examples = task.load("train", limit=args.examples, seed=0)
    backend = get_backend("hf:smollm2", {"kv_cache_mb": args.kv_cache_mb} if args.kv_cache_mb else None)
    backend.generate([task.teacher_prompt(examples[0], "A", 3)], SamplingParams(max_new_tokens=8))  # warm-up
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for config in args.configs:
            size, samples, *rest = config.split(":")
            size, samples, whole = int(size), int(samples), rest == ["full"]
            backend.batch_size = size  # prompts per forward (each with its samples), as a study sizes its hf teacher
            sampling = SamplingParams(temperature=0.7, max_new_tokens=256, seed=0,
                                      stop_regex=NEVER if whole else None)
            t0 = time.perf_counter()
            stats = generate_rationales(backend, task, examples, Path(tmp) / f"{config.replace(':', '_')}.sqlite",
                                        max_retries=args.max_retries, concurrency=size, samples_per_prompt=samples,
                                        sampling=sampling, progress=False)
            seconds = time.perf_counter() - t0
            rows.append({"config": config, "batch_size": size, "samples_per_prompt": samples,
                         "stops_at_first_answer": not whole, "max_retries": args.max_retries,
                         "attempts": stats["attempts"], "seconds": round(seconds, 2),
                         "attempts_per_s": round(stats["attempts"] / seconds, 3),
                         "teacher_tokens": stats["teacher_tokens"], "kept": stats["kept"],
                         "rejections": stats["rejections"]})
            print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["attempts_per_s"]
    for row in rows:
        row["speedup_vs_first"] = round(row["attempts_per_s"] / base, 2)
    print(json.dumps({r["config"]: r["speedup_vs_first"] for r in rows}))
    write_result("teacher_batching", {"task": "sst2", "examples": len(examples), "kv_cache_mb": backend.kv_cache_mb,
                                      "rows": rows, **summarize(rows)},
                 name="teacher_batching", out=args.out, save=not args.no_save, device="cpu")


def summarize(rows: list[dict]) -> dict:
    """``headline`` (attempts/s of the first and the last config) and ``ratios`` (each config against the first,
    the baseline measured in the same run)."""
    first, last = rows[0], rows[-1]
    return {"headline": [headline(first["config"], first["attempts_per_s"], "attempts/s"),
                         headline(last["config"], last["attempts_per_s"], "attempts/s")],
            "ratios": [ratio(f"{r['config']} / {first['config']}, attempts/s", r["speedup_vs_first"])
                       for r in rows[1:]]}


if __name__ == "__main__":
    main()
