"""Where self-consistency sampling time goes: raftlab's hf backend sampling k answers per question, by kind of work.

The workload is bench_sc.py's (GSM8K CoT prompts, ``--k`` samples each at T = 0.8, ``--batch-size`` sequences per
batch). The sampling call runs under cProfile; each function's own time is put in one category: matrix products
(oneDNN linears), decoding attention (the cascade kernel), prefill attention, norms and rotary embedding, sampling
(``raftlab.engine.sampling`` and the tensor operations it calls), other tensor operations, and Python (the
interpreter's own work in the decoding loop; cProfile's per-call cost inflates this share somewhat). The
machine's bf16 (or fp32) matrix-multiply rate is measured in the same run, and the result states what share of it
the sampling's model FLOPs (2 x parameters per generated or prefilled token) reach: the bound the profile explains.
Run it pinned to one core:

    OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python benchmarks/profile_sc.py --model smollm2 --threads 1
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

from results_io import add_out_argument, headline, slug, write_result

from raftlab.machine import matmul_gflops

#: (category, substrings of a function's name), first match wins; builtins that match none count for the category
#: of the Python function that called them most.
BY_NAME = (
    ("matrix products", ("_linear_pointwise", "mkldnn.", "addmm", "built-in method mm", "linear")),
    ("decoding attention (cascade kernel)", ("cascade_attention",)),
    ("prefill attention", ("scaled_dot_product", "flash_attention")),
    ("norms and rotary embedding", ("rms_norm", "rotary_heads")),
)
SAMPLING_FILE = "engine/sampling.py"


def _main_caller(callers: dict) -> tuple:
    """The cProfile entry that spent the most cumulative time calling a function."""
    return max(callers.items(), key=lambda kv: kv[1][2])[0]


def _called_from_cascade(callers: dict, stats: dict, depth: int = 3) -> bool:
    """Whether a function's main caller chain (up to ``depth`` callers, through torch's op wrappers) starts in
    ``cascade_attention``."""
    for _ in range(depth):
        if not callers:
            return False
        caller = _main_caller(callers)
        if caller[2] == "cascade_attention":
            return True
        callers = stats.get(caller, (None,) * 5)[4]
    return False


def category(func: tuple, callers: dict, stats: dict | None = None) -> str:
    """The category of one cProfile entry ``(file, line, name)``; ``stats`` (cProfile's table) lets a builtin
    called from the cascade attention (torch's flash attention, where the native kernel is not used) count as
    decoding attention."""
    file, _, name = func
    text = f"{file}:{name}"
    if file == "~" and stats is not None and _called_from_cascade(callers, stats):
        return "decoding attention (cascade kernel)"
    for label, parts in BY_NAME:
        if any(p in text for p in parts):
            return label
    if file == "~":  # a builtin: the category of its main caller
        if callers:
            caller = _main_caller(callers)
            return "sampling" if caller[0].endswith(SAMPLING_FILE) else "other tensor operations"
        return "other tensor operations"
    return "sampling" if file.endswith(SAMPLING_FILE) else "Python"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--task", default="gsm8k")
    ap.add_argument("--questions", type=int, default=8)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=40, help="sequences per batch (questions x k)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    add_out_argument(ap, "benchmarks/results/sc_profile_<model>_cpu.json")
    args = ap.parse_args()

    import torch

    from raftlab.backends.base import SamplingParams
    from raftlab.backends.hf import HFBackend
    from raftlab.inference import DEFAULT_STOP
    from raftlab.tasks import get_task

    if args.threads:
        torch.set_num_threads(args.threads)
    task = get_task(args.task)
    examples = task.load("test", limit=args.questions, seed=0,
                         data_dir="packaged" if args.task in ("gsm8k", "svamp", "creak") else None)
    prompts = [task.prompt(e, "cot") for e in examples]
    backend = HFBackend(args.model, device="cpu", batch_size=max(1, args.batch_size // args.k), kv_cache_mb=512)
    dtype = next(backend.model.parameters()).dtype
    params = sum(p.numel() for p in backend.model.parameters())
    sampling = SamplingParams(n=args.k, temperature=0.8, max_new_tokens=args.max_new_tokens,
                              stop=tuple(DEFAULT_STOP), seed=0)
    backend.generate(prompts[:1], SamplingParams(n=2, temperature=0.8, max_new_tokens=4, seed=0))  # warm-up
    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    profiler.enable()
    rows = backend.generate(prompts, sampling)
    profiler.disable()
    seconds = time.perf_counter() - t0
    generated = sum(g.num_tokens for row in rows for g in row)
    prompt_tokens = sum(len(backend.tokenizer(p).input_ids) for p in prompts)
    rate = matmul_gflops(dtype, "cpu")

    stats = pstats.Stats(profiler).stats
    by_category: dict[str, float] = {}
    for func, (_, _, own, _, callers) in stats.items():
        label = category(func, callers, stats)
        by_category[label] = by_category.get(label, 0.0) + own
    profiled = sum(by_category.values())
    shares = {k: round(v / profiled, 4) for k, v in sorted(by_category.items(), key=lambda kv: -kv[1])}
    for label, share in shares.items():
        print(f"{label:40s} {share:6.1%}")
    model_gflop = 2 * params * (generated + prompt_tokens) / 1e9
    achieved = model_gflop / seconds
    matmul_seconds = by_category.get("matrix products", 0.0)
    print(f"{generated} tokens in {seconds:.2f} s ({generated / seconds:.1f} tokens/s); model FLOPs at "
          f"{achieved:.1f} GFLOP/s = {achieved / rate:.1%} of this core's {rate:.1f} GFLOP/s matmul rate; "
          f"the linears alone at {model_gflop / max(matmul_seconds, 1e-9):.1f} GFLOP/s")
    settings = {"model": args.model, "task": args.task, "questions": len(prompts), "k": args.k,
                "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size,
                "threads": torch.get_num_threads(), "dtype": str(dtype).replace("torch.", "")}
    heads = [headline("tokens/s", round(generated / seconds, 1), "generated tokens/s"),
             headline("share of the matmul rate", round(100 * achieved / rate, 1), "%"),
             *[headline(label, round(100 * share, 1), "% of profiled time") for label, share in
               list(shares.items())[:3]]]
    write_result("sc_profile", {"settings": settings, "seconds": round(seconds, 2), "generated_tokens": generated,
                                "prompt_tokens": prompt_tokens, "matmul_gflops": round(rate, 1),
                                "model_gflops_per_s": round(achieved, 1),
                                "linear_gflops_per_s": round(model_gflop / max(matmul_seconds, 1e-9), 1),
                                # the bound: the rate if everything but the matrix products took no time
                                "tokens_per_s_matmuls_only": round(generated / seconds / max(shares.get(
                                    "matrix products", 0.0), 1e-9), 1),
                                "shares": shares, "headline": heads, "ratios": []},
                 name=slug("sc_profile", args.model, "cpu"), out=args.out, save=not args.no_save, device="cpu")


if __name__ == "__main__":
    main()
