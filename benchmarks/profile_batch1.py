"""Where batch-1 decoding time goes: raftlab's native step alone vs a whole generation, against the bandwidth bound.

A batch-1 generation (one prompt, one sample: ``raftlab serve`` answering one request, a local teacher) is timed
whole, as ``bench_sc.py --batch1`` does, and then in parts on the same prompts: the prompt's prefill, and the
native decoding step alone (:mod:`raftlab.engine.one_row_step`, one C++ call per token, called back to back on a
cache the prefill filled). What a generated token costs beyond the native step is sampling, the stop checks and
the Python around each step. The bound is this process's read bandwidth (measured in the same run) divided by the
bytes of weights one token reads. Run it pinned to one core:

    OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python benchmarks/profile_batch1.py --model smollm2 --threads 1

Writes ``benchmarks/results/batch1_profile_<model>_cpu.json``.
"""

from __future__ import annotations

import argparse
import time

from bench_sc import read_bandwidth, weight_bytes_per_token
from results_io import add_out_argument, headline, slug, write_result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--task", default="gsm8k")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None)
    add_out_argument(ap, "benchmarks/results/batch1_profile_<model>_cpu.json")
    args = ap.parse_args()

    import torch

    from raftlab.backends.base import SamplingParams
    from raftlab.backends.hf import HFBackend
    from raftlab.engine.prefill import cache_argument, prefill
    from raftlab.tasks import get_task

    if args.threads:
        torch.set_num_threads(args.threads)
    backend = HFBackend(args.model, dtype="bfloat16", device="cpu", batch_size=1)
    model, tok = backend.model, backend.tokenizer
    decoder = backend.decoder
    step = decoder.one_row_step()
    if step is None:
        raise SystemExit("the native batch-1 step is not available on this machine (no AVX-512 BF16 or no compiler)")
    task = get_task(args.task)
    prompts = [task.prompt(e, "cot") for e in task.load("test", limit=args.prompts, seed=0, data_dir="packaged")]
    params = SamplingParams(n=1, temperature=0.8, max_new_tokens=args.max_new_tokens, seed=0)
    backend.generate(prompts[:1], params)  # warm-up: first-call setup is not what is measured

    t0 = time.perf_counter()
    generated = sum(backend.generate([p], params)[0][0].num_tokens for p in prompts)
    whole = time.perf_counter() - t0

    cache_arg = cache_argument(model)
    prefill_s = step_s = 0.0
    steps = 0
    with torch.inference_mode():
        for p in prompts:
            ids = tok(p).input_ids
            t0 = time.perf_counter()
            cache, logits, _, _ = prefill(model, [ids], pad_token_id=tok.pad_token_id, device="cpu",
                                          cache_arg=cache_arg, budget=args.max_new_tokens)
            prefill_s += time.perf_counter() - t0
            token = int(logits.argmax())
            t0 = time.perf_counter()
            for i in range(args.max_new_tokens):
                step(token, len(ids) + i, cache)
            step_s += time.perf_counter() - t0
            steps += args.max_new_tokens

    bandwidth = read_bandwidth()
    per_token = weight_bytes_per_token(model)
    bound = bandwidth * 1e9 / per_token
    ms_whole = whole / generated * 1e3
    ms_step = step_s / steps * 1e3
    ms_prefill = prefill_s / generated * 1e3  # each prompt's prefill, spread over the tokens it generated
    ms_rest = ms_whole - ms_step - ms_prefill
    parts = {"native step (weights, attention, LM head)": round(ms_step, 3),
             "prompt prefill (per generated token)": round(ms_prefill, 3),
             "sampling, stop checks and Python per token": round(ms_rest, 3)}
    for name, ms in parts.items():
        print(f"{name:45s} {ms:7.3f} ms/token  ({ms / ms_whole:6.1%})")
    print(f"whole generation {1e3 / ms_whole:.1f} tokens/s; native step alone {1e3 / ms_step:.1f} tokens/s; "
          f"bandwidth bound {bound:.1f} tokens/s ({bandwidth:.1f} GB/s read now, {per_token / 1e6:.0f} MB/token)")
    settings = {"model": args.model, "task": args.task, "prompts": len(prompts), "max_new_tokens": args.max_new_tokens,
                "threads": torch.get_num_threads()}
    write_result("batch1_profile", {
        "settings": settings, "generated_tokens": generated, "ms_per_token": round(ms_whole, 3), "parts_ms": parts,
        "shares": {k: round(v / ms_whole, 4) for k, v in parts.items()},
        "read_bandwidth_gbs": round(bandwidth, 2), "weight_mb_per_token": round(per_token / 1e6, 1),
        "bound_tokens_per_s": round(bound, 2), "tokens_per_s": round(1e3 / ms_whole, 2),
        "native_step_tokens_per_s": round(1e3 / ms_step, 2),
        "native_step_share_of_bound": round(1e3 / ms_step / bound, 4),
        "headline": [headline("whole generation", round(1e3 / ms_whole, 2), "tokens/s"),
                     headline("native step alone", round(1e3 / ms_step, 2), "tokens/s"),
                     headline("bandwidth bound", round(bound, 2), "tokens/s")],
        "ratios": []}, name=slug("batch1_profile", args.model, "cpu"), out=args.out, save=not args.no_save,
        device="cpu")


if __name__ == "__main__":
    main()
