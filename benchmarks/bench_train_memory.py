"""Full finetuning on a CPU: glibc's default allocator against raftlab's kept memory, each in its own process.

The real preset trains every parameter of SmolLM2-135M (bf16 autocast over fp32 weights). Each step allocates and
frees the same large buffers; with glibc's defaults every block above its mmap threshold is fresh pages that the
kernel zeroes on first touch. Settings, each run in a fresh process (the allocator's settings are per process):

* default: glibc's allocator, and sdpa attention wherever the plain matmul attention would hold more than 512 MB
  of attention matrices (raftlab's ``EAGER_ATTENTION_MB``);
* kept memory: :func:`raftlab.allocator.keep_freed_memory` (large blocks from the heap, no trimming), same
  attention;
* kept memory + plain attention to 2 GB: also the plain matmul attention up to 2 GB of attention matrices
  (``EAGER_ATTENTION_MB`` = 2048 instead of raftlab's 512), an alternative that was tried.

Same data (bench_train's GSM8K + topic mixture), model, batch, steps and seed in each; prints wall seconds, CPU
seconds (user and kernel), the process's peak memory and the final loss, and the speed-ups over the default in the
same run; rounds are interleaved and each setting's fastest round counts. Writes
``benchmarks/results/train_memory_<model>_cpu.json``.

    .venv/bin/python benchmarks/bench_train_memory.py --model smollm2 --steps 12
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from bench_train import add_setup_arguments, setup_argv, worker_result
from results_io import add_out_argument, headline, ratio, slug, write_result

#: (name, keep freed memory, EAGER_ATTENTION_MB)
SETTINGS = (("default", False, 512), ("kept memory", True, 512),
            ("kept memory + plain attention to 2 GB", True, 2048))


def worker(args: argparse.Namespace) -> None:
    """One setting's run in this process: prints one JSON line."""
    import torch

    import raftlab.training.attention as attention_module
    from bench_train import RAFTLAB_BF16, build_trainer, make_data
    from raftlab.allocator import keep_freed_memory
    from raftlab.training import TrainConfig

    if args.keep and not keep_freed_memory():
        sys.exit("kept memory: glibc's mallopt is not available here (or RAFTLAB_KEEP_FREED_MEMORY=0)")
    attention_module.EAGER_ATTENTION_MB = args.eager_mb
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.jsonl"
        make_data(data, args.examples)
        config = TrainConfig(model=args.model, data=str(data), objective="raft", out=str(Path(tmp) / "out"),
                             lora=False, learning_rate=1e-4, epochs=1, max_steps=args.steps,
                             batch_size=args.batch_size, max_length=args.max_length, logging_steps=1000)
        trainer = build_trainer(config, RAFTLAB_BF16)[0]
        base = trainer.model.config._attn_implementation
        before = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        result = trainer.train()
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"wall_seconds": wall, "user_seconds": after.ru_utime - before.ru_utime,
                      "kernel_seconds": after.ru_stime - before.ru_stime,
                      "minor_faults": after.ru_minflt - before.ru_minflt, "attention": base,
                      "peak_rss_mb": round(after.ru_maxrss / 1024),
                      "train_loss": result.training_loss, "steps": result.global_step}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_setup_arguments(ap)
    ap.set_defaults(examples=96, batch_size=8, max_length=384)  # the real preset's full-finetuning batches
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=2, help="interleaved rounds; each setting's fastest counts")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--keep", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--eager-mb", type=int, default=512, help=argparse.SUPPRESS)
    add_out_argument(ap, "benchmarks/results/train_memory_<model>_cpu.json")
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return

    common = [*setup_argv(args), "--steps", str(args.steps)]
    best: dict[str, dict] = {}
    for _ in range(max(1, args.repeats)):
        for name, keep, eager_mb in SETTINGS:
            argv = ["--worker", *common, "--eager-mb", str(eager_mb), *(["--keep"] if keep else [])]
            r = worker_result(__file__, argv, name)
            print(f"{name:40s} wall {r['wall_seconds']:6.1f} s  user {r['user_seconds']:6.1f} s  kernel "
                  f"{r['kernel_seconds']:5.1f} s  minor faults {r['minor_faults']:>9,}  {r['attention']:5s}  "
                  f"peak {r['peak_rss_mb']:,} MB  loss {r['train_loss']:.4f}")
            if name not in best or r["wall_seconds"] < best[name]["wall_seconds"]:
                best[name] = r
    base = best["default"]["wall_seconds"]
    ratios = []
    for name, _, _ in SETTINGS[1:]:
        speedup = base / best[name]["wall_seconds"]
        print(f"speed-up (wall seconds per step) {name} / default: {speedup:.2f}x")
        ratios.append(ratio(f"{name} / default, wall seconds", speedup))
    current = SETTINGS[-1][0]
    heads = [headline(f"{current}, s/step", round(best[current]["wall_seconds"] / args.steps, 3), "s/step"),
             headline("default, s/step", round(base / args.steps, 3), "s/step")]
    settings = {**{k: v for k, v in vars(args).items() if k not in ("worker", "keep", "eager_mb", "out", "no_save")},
                "lora": False, "bf16": "autocast over fp32 weights", "objective": "raft"}
    write_result("train_memory", {"settings": settings, "runs": best, "headline": heads, "ratios": ratios},
                 name=slug("train_memory", Path(args.model).name, "cpu"), out=args.out, save=not args.no_save,
                 device="cpu")


if __name__ == "__main__":
    main()
