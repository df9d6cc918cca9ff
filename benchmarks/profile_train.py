"""Where raftlab's training time goes: one epoch of its default recipe under torch's profiler, by kind of work.

The recipe is bench_train.py's "raftlab + bf16" (the same data, model, batch and LoRA settings; length-grouped
batches, target-only logits, bf16 base with fp32 adapters under autocast; fp32 where the CPU has no bf16, or with
``--no-bf16``), in a process that keeps freed memory as ``raftlab train`` does. Each
profiled operator's self CPU time is put in one category (:data:`CATEGORIES`, first match wins; the rest is
"other"), so the result says how much of a step is matrix products, LoRA dropout's random masks, elementwise
work, dtype casts, attention's softmax, the loss and the optimizer. Run it pinned to one core:

    OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python benchmarks/profile_train.py --model smollm2 --threads 1
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench_train import RAFTLAB, RAFTLAB_BF16, add_setup_arguments, build_trainer, train_config
from results_io import add_out_argument, headline, slug, write_result

#: (category, operator-name prefixes); an operator counts in the first category one of whose prefixes it has.
CATEGORIES = (
    ("matrix products", ("aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm", "aten::linear", "mkldnn")),
    ("dropout masks (LoRA dropout)", ("aten::bernoulli", "aten::dropout", "aten::native_dropout", "aten::random_",
                                      "aten::bitwise_and", "aten::ge")),
    ("dtype casts (autocast, bf16 <-> fp32)", ("aten::copy_", "aten::_to_copy", "aten::to")),
    ("attention softmax", ("aten::_softmax", "aten::_softmax_backward", "aten::_scaled_dot_product")),
    ("loss (log-softmax over the vocabulary)", ("aten::_log_softmax", "aten::nll_loss", "aten::cross_entropy")),
    ("optimizer (AdamW)", ("aten::_foreach", "aten::_fused_adam", "aten::lerp", "aten::addcdiv", "aten::addcmul",
                           "aten::sqrt")),
    ("elementwise (mul, add, silu, norms)", ("aten::mul", "aten::add", "aten::div", "aten::silu", "aten::pow",
                                            "aten::rsqrt", "aten::mean", "aten::sum", "aten::neg", "aten::cat",
                                            "aten::sub", "aten::where", "aten::fill_", "aten::zero_")),
)


def category(name: str) -> str:
    for label, prefixes in CATEGORIES:
        if name.startswith(prefixes):
            return label
    return "other"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_setup_arguments(ap)
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                    help="profile the bf16 recipe (default: raftlab's choice on this CPU)")
    add_out_argument(ap, "benchmarks/results/train_profile_<model>_cpu[_fp32].json")
    args = ap.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile

    from raftlab.allocator import keep_freed_memory
    from raftlab.machine import cpu_has_fast_bf16

    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()  # as `raftlab train` and bench_train's raftlab recipes run
    bf16 = args.bf16 if args.bf16 is not None else cpu_has_fast_bf16()
    with tempfile.TemporaryDirectory() as tmp:
        config = train_config(args, Path(tmp))
        trainer, _, _ = build_trainer(config, RAFTLAB_BF16 if bf16 else RAFTLAB)
        c0 = time.process_time()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            trainer.train()
        cpu_seconds = time.process_time() - c0
    events = [e for e in prof.key_averages() if e.key.startswith("aten::") or e.key.startswith("mkldnn")]
    total = sum(e.self_cpu_time_total for e in events)
    by_category: dict[str, float] = {}
    for e in events:
        by_category[category(e.key)] = by_category.get(category(e.key), 0.0) + e.self_cpu_time_total
    shares = {k: round(v / total, 4) for k, v in sorted(by_category.items(), key=lambda kv: -kv[1])}
    top = [{"op": e.key, "self_cpu_s": round(e.self_cpu_time_total / 1e6, 3), "calls": e.count,
            "share": round(e.self_cpu_time_total / total, 4)}
           for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:15]]
    for label, share in shares.items():
        print(f"{label:45s} {share:6.1%}")
    settings = {"model": args.model, "examples": args.examples, "batch_size": args.batch_size,
                "max_length": args.max_length, "threads": torch.get_num_threads(), "bf16": bf16,
                "lora": True, "lora_dropout": 0.05}
    heads = [headline(label, round(100 * share, 1), "% of operator CPU time") for label, share in
             list(shares.items())[:3]]
    write_result("train_profile", {"settings": settings, "cpu_seconds_profiled": round(cpu_seconds, 2),
                                   "operator_cpu_seconds": round(total / 1e6, 2), "shares": shares,
                                   "top_operators": top, "headline": heads, "ratios": []},
                 name=slug("train_profile", Path(args.model).name, "cpu", None if bf16 else "fp32"), out=args.out,
                 save=not args.no_save,
                 device="cpu")


if __name__ == "__main__":
    main()
