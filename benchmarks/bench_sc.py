"""Self-consistency throughput: raftlab's hf backend vs two baselines, measured in the same run.

Baselines: **batched** (what a competent user writes: one ``model.generate(num_return_sequences=k)`` per batch of
questions, left-padded, the same stop strings) and **sequential** (the paper's scripts: k separate ``generate``
calls per question; slow, kept to show what the official approach costs). raftlab: its hf backend (questions
batched, a shared prefix prefilled once, cascade attention over each prompt's cache on a CPU, prepacked bf16
weights, finished sequences dropped). The baselines run a separately loaded, unmodified transformers model of the
same dtype; all use the same prompts, temperature, max_new_tokens and stop strings. Prints questions/s, seconds
per question, generated tokens/s, peak memory, ratios against each baseline (wall-clock and tokens/s: sampled
lengths differ between methods) and the share of the machine's matmul rate measured in the same run, and writes
them as JSON to ``benchmarks/results/sc_<model>_<dtype>_<device>.json`` (``--out``; ``benchmarks/results_io.py``).

**Batch 1** (``--batch1``, on by default on a CPU): one prompt at a time, one sample, as ``raftlab serve`` and a
local teacher decode; HF ``generate`` against raftlab, and both against the memory-bandwidth bound (this
machine's read bandwidth, measured in the same run, divided by the bytes of weights one token reads).

``--random-init llama-7b`` measures a model of that shape with random weights (no download; the spec's tokenizer),
e.g. on a GPU: random weights rarely emit EOS or a stop string, so every sample runs to ``--max-new-tokens``, which
makes the timing an upper bound for that length.

    .venv/bin/python benchmarks/bench_sc.py --model smollm2 --questions 4 --k 10
    python benchmarks/bench_sc.py --random-init llama-7b --dtype bfloat16 --questions 32 --k 10 --baselines batched
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

from results_io import add_out_argument, headline, ratio, slug, write_result

from raftlab.machine import matmul_gflops

#: Shapes for ``--random-init`` (Llama-2-7B and the 135M SmolLM2 student).
SHAPES = {
    "llama-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                     num_key_value_heads=32),
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3),
}


def _generated(out, prompt_len: int, tok) -> int:
    """Generated tokens of each returned row, up to and including the first pad/EOS."""
    new = out[:, prompt_len:]
    ends = {t for t in (tok.pad_token_id, tok.eos_token_id) if t is not None}
    total = 0
    for row in new.tolist():
        n = len(row)
        for i, t in enumerate(row):
            if t in ends:
                n = i + 1
                break
        total += n
    return total


def sequential(model, tok, prompts, k, temperature, max_new_tokens, stop, batch_size):
    import torch

    tokens = 0
    for p in prompts:
        ids = tok(p, return_tensors="pt").to(model.device)
        for j in range(k):
            torch.manual_seed(j)
            out = model.generate(**ids, do_sample=True, temperature=temperature, top_k=0, max_new_tokens=max_new_tokens,
                                 stop_strings=list(stop), tokenizer=tok, pad_token_id=tok.pad_token_id)
            tokens += out.shape[1] - ids.input_ids.shape[1]
    return tokens


def batched(model, tok, prompts, k, temperature, max_new_tokens, stop, batch_size):
    """One ``generate(num_return_sequences=k)`` per batch of ``batch_size // k`` questions (left padding)."""
    import torch

    tok.padding_side = "left"
    per = max(1, batch_size // k)
    tokens = 0
    torch.manual_seed(0)
    for i in range(0, len(prompts), per):
        enc = tok(prompts[i:i + per], return_tensors="pt", padding=True).to(model.device)
        out = model.generate(**enc, do_sample=True, temperature=temperature, top_k=0, max_new_tokens=max_new_tokens,
                             num_return_sequences=k, stop_strings=list(stop), tokenizer=tok,
                             pad_token_id=tok.pad_token_id)
        tokens += _generated(out, enc.input_ids.shape[1], tok)
    return tokens


def raftlab_sc(backend, prompts, k, temperature, max_new_tokens, stop, batch_size):
    from raftlab.backends.base import SamplingParams

    rows = backend.generate(prompts, SamplingParams(n=k, temperature=temperature, max_new_tokens=max_new_tokens,
                                                    stop=tuple(stop), seed=0))
    return sum(g.num_tokens for row in rows for g in row)


def _random_model(shape: str, tokenizer, dtype, device):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=4096, **SHAPES[shape],
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype or torch.float32)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2", help="model spec (with --random-init: only its tokenizer is used)")
    ap.add_argument("--random-init", choices=sorted(SHAPES), default=None)
    ap.add_argument("--task", default="gsm8k")
    ap.add_argument("--questions", type=int, default=4)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=40, help="sequences per batch (questions x k), every method")
    ap.add_argument("--dtype", default=None, help="e.g. bfloat16")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ap.add_argument("--baselines", default="batched,sequential", help="comma-separated: batched, sequential")
    ap.add_argument("--batch1", action=argparse.BooleanOptionalAction, default=None,
                    help="also measure batch-1 decoding against the bandwidth bound (default: on a CPU)")
    add_out_argument(ap, "benchmarks/results/sc_<model>_<dtype>_<device>.json")
    args = ap.parse_args()

    import torch

    from raftlab.backends.hf import HFBackend
    from raftlab.inference import DEFAULT_STOP
    from raftlab.models import load_model, load_tokenizer
    from raftlab.tasks import get_task

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, args.dtype) if args.dtype else None
    task = get_task(args.task)
    examples = task.load("test", limit=args.questions, seed=0, data_dir="packaged" if args.task in
                         ("gsm8k", "svamp", "creak") else None)
    prompts = [task.prompt(e, "cot") for e in examples]
    kv_mb = 512 if device == "cpu" else 60_000
    prompts_per_batch = max(1, args.batch_size // args.k)  # the backend's batch unit: prompts, each with k samples
    if args.random_init:
        tok = load_tokenizer(args.model)
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        model = _random_model(args.random_init, tok, dtype, device)
        backend = HFBackend(copy.deepcopy(model), tokenizer=tok, device=device, batch_size=prompts_per_batch,
                            kv_cache_mb=kv_mb)
    else:
        backend = HFBackend(args.model, dtype=args.dtype, device=device, batch_size=prompts_per_batch,
                            kv_cache_mb=kv_mb)
        # the baselines get their own, unmodified model (the backend changes its own model's kernels in place)
        model, tok = load_model(args.model, dtype=next(backend.model.parameters()).dtype, device=device)
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
    params = sum(p.numel() for p in model.parameters())
    print(f"model={args.random_init or args.model} ({params / 1e6:.0f}M params, {next(model.parameters()).dtype}) "
          f"device={device} task={args.task} questions={len(prompts)} k={args.k} T={args.temperature} "
          f"max_new_tokens={args.max_new_tokens} batch={args.batch_size} threads={torch.get_num_threads()}"
          + (f" gpu={torch.cuda.get_device_name()}" if device == "cuda" else ""))
    methods = {"batched": ("batched HF (one generate, num_return_sequences=k)", batched),
               "sequential": ("sequential HF (k generate calls per question)", sequential)}
    runs = [(b.strip(), *methods[b.strip()]) for b in args.baselines.split(",") if b.strip()]
    runs.append(("raftlab", "raftlab hf backend", None))
    measured: dict[str, dict] = {}
    raw: dict[str, tuple[float, float, int]] = {}  # unrounded (wall s, CPU s, tokens)
    for key, name, fn in runs:
        if fn is None:
            work = lambda: raftlab_sc(backend, prompts, args.k, args.temperature, args.max_new_tokens,  # noqa: E731
                                      DEFAULT_STOP, args.batch_size)
        else:
            work = lambda fn=fn: fn(model, tok, prompts, args.k, args.temperature,  # noqa: E731
                                    args.max_new_tokens, DEFAULT_STOP, args.batch_size)
        dt, cpu, toks, memory = _timed(device, work)
        raw[key] = (dt, cpu, toks)
        measured[key] = {"name": name, "seconds": round(dt, 3), "cpu_seconds": round(cpu, 3), "tokens": toks,
                         "questions_per_s": round(len(prompts) / dt, 4), "s_per_question": round(dt / len(prompts), 3),
                         "tokens_per_s": round(toks / dt, 2), **memory}
        print(f"{name:52s} {len(prompts) / dt:8.3f} questions/s  {dt / len(prompts):7.2f} s/question  "
              f"{toks / dt:9.1f} tokens/s  {toks:7d} tokens  {dt:7.1f} s wall  {cpu:7.1f} s CPU  "
              f"{_memory_text(memory)}")
    dtype_used = next(model.parameters()).dtype
    dtype_name = str(dtype_used).removeprefix("torch.")
    peak = matmul_gflops(dtype_used, device)
    for key, row in measured.items():
        flops = 2 * params * raw[key][2] / raw[key][0] / 1e9  # weights' multiply-adds per generated token
        row["weight_gflops"], row["matmul_share"] = round(flops, 2), round(flops / peak, 4)
        print(f"{row['name']:52s} {flops:7.1f} GFLOP/s in the weights = {flops / peak:5.1%} of this machine's "
              f"{dtype_name} matmul rate ({peak:.0f} GFLOP/s, measured now)")
    ours = measured["raftlab"]
    (t_ours, c_ours, n_ours), ratios = raw["raftlab"], []
    for key, row in measured.items():
        if key == "raftlab":
            continue
        t, c, n = raw[key]
        wall, cpu_ratio, rate = t / t_ours, c / max(c_ours, 1e-9), (n_ours / t_ours) / (n / t)
        print(f"speed-up vs {row['name']}: {wall:.2f}x wall-clock, {cpu_ratio:.2f}x CPU time, {rate:.2f}x tokens/s")
        row["raftlab_cpu_time_ratio"] = round(cpu_ratio, 3)
        ratios += [ratio(f"raftlab / {key} HF, wall-clock", wall), ratio(f"raftlab / {key} HF, tokens/s", rate)]
    heads = [headline(f"raftlab ({dtype_name}, {device})", ours["tokens_per_s"], "tokens/s"),
             headline("raftlab", ours["questions_per_s"], "questions/s")]
    one = None
    if args.batch1 if args.batch1 is not None else device == "cpu":
        one = batch_one(model, tok, backend, prompts, args, device)
        heads.append(headline("raftlab, batch 1", one["raftlab"]["tokens_per_s"], "tokens/s"))
        ratios.append(ratio("raftlab / HF generate, batch 1 tokens/s",
                            one["raftlab"]["tokens_per_s"] / one["hf"]["tokens_per_s"]))
    settings = {"model": args.model, "random_init": args.random_init, "params_m": round(params / 1e6, 1),
                "dtype": dtype_name, "device": device, "task": args.task, "questions": len(prompts), "k": args.k,
                "temperature": args.temperature, "max_new_tokens": args.max_new_tokens,
                "batch_size": args.batch_size, "baselines": [key for key, _, fn in runs if fn is not None]}
    if device == "cuda":
        settings["gpu"] = torch.cuda.get_device_name()
    name = slug("sc", args.random_init or Path(args.model).name, dtype_name, device)
    write_result("sc_throughput", {"settings": settings, "matmul_gflops": round(peak, 1), "methods": measured,
                                   "batch1": one, "headline": heads, "ratios": ratios},
                 name=name, out=args.out, save=not args.no_save, device=device)


def _memory_text(memory: dict) -> str:
    if "peak_gpu_gib" in memory:
        return f"peak GPU {memory['peak_gpu_gib']:6.1f} GiB"
    return f"peak RSS {memory['peak_rss_mib']:7.0f} MiB"


def _timed(device: str, work):
    """``(wall s, CPU s, result, {"peak_gpu_gib" or "peak_rss_mib": ...})`` of ``work()``."""
    import torch

    from raftlab.machine import PeakRSS

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with PeakRSS() as mem, torch.inference_mode():
        t0, c0 = time.perf_counter(), time.process_time()
        result = work()
        if device == "cuda":
            torch.cuda.synchronize()
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    memory = ({"peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)} if device == "cuda"
              else {"peak_rss_mib": round(mem.peak / 2**20)})
    return dt, cpu, result, memory


def read_bandwidth(megabytes: int = 512, repeats: int = 5) -> float:
    """This process's memory read bandwidth in GB/s: the best of a few full reads of a buffer far larger than the
    caches (a max over bytes and a float32 sum, and, where raftlab's native step is available, its own
    prefetching matrix-vector product over the buffer as bf16: the bound is the fastest read measured), each
    after a warm-up pass."""
    import torch

    from raftlab.engine.native_build import load_extension, native_enabled

    x = torch.ones(megabytes * 2**20 // 4)
    reads = [lambda: x.view(torch.uint8).max(), lambda: x.sum()]
    native = load_extension() if native_enabled() else None
    if native is not None:
        w = x.view(torch.bfloat16).view(-1, 512)
        v = torch.ones(512, dtype=torch.bfloat16)
        reads.append(lambda: native.matvec(w, v))
    best = 0.0
    for read in reads:
        read()
        t0 = time.perf_counter()
        for _ in range(repeats):
            read()
        best = max(best, x.numel() * 4 * repeats / (time.perf_counter() - t0) / 1e9)
    return best


def weight_bytes_per_token(model) -> int:
    """Bytes of weights one decoding step reads: every parameter once, except an input embedding that is not
    shared with the output layer (a step reads one of its rows)."""
    embed = model.get_input_embeddings().weight
    tied = embed is model.get_output_embeddings().weight
    # parameters() yields a tied weight once
    return sum(p.numel() * p.element_size() for p in model.parameters() if tied or p is not embed)


def batch_one(model, tok, backend, prompts, args, device: str) -> dict:
    """Batch-1 decoding (one prompt, one sample at a time) of HF generate and raftlab vs the bandwidth bound."""
    import torch

    from raftlab.backends.base import SamplingParams

    bandwidth = read_bandwidth()
    per_token = weight_bytes_per_token(model)
    bound = bandwidth * 1e9 / per_token

    def hf_one() -> int:
        torch.manual_seed(0)
        total = 0
        for p in prompts:
            ids = tok(p, return_tensors="pt").to(model.device)
            out = model.generate(**ids, do_sample=True, temperature=args.temperature, top_k=0,
                                 max_new_tokens=args.max_new_tokens, pad_token_id=tok.pad_token_id)
            total += out.shape[1] - ids.input_ids.shape[1]
        return total

    def ours_one() -> int:
        params = SamplingParams(n=1, temperature=args.temperature, max_new_tokens=args.max_new_tokens, seed=0)
        return sum(backend.generate([p], params)[0][0].num_tokens for p in prompts)

    print(f"batch 1: read bandwidth {bandwidth:.1f} GB/s (measured now), {per_token / 1e6:.0f} MB of weights per "
          f"token -> bound {bound:.1f} tokens/s (prompt prefill included in the timings below)")
    out = {"read_bandwidth_gbs": round(bandwidth, 2), "weight_mb_per_token": round(per_token / 1e6, 1),
           "bound_tokens_per_s": round(bound, 2)}
    for key, name, work in (("hf", "HF generate, one prompt at a time", hf_one),
                            ("raftlab", "raftlab hf backend, one prompt at a time", ours_one)):
        dt, cpu, toks, memory = _timed(device, work)
        out[key] = {"name": name, "seconds": round(dt, 3), "cpu_seconds": round(cpu, 3), "tokens": toks,
                    "tokens_per_s": round(toks / dt, 2), "share_of_bound": round(toks / dt / bound, 4), **memory}
        print(f"{name:52s} {toks / dt:9.1f} tokens/s  {toks:7d} tokens  {dt:7.1f} s wall  = {toks / dt / bound:5.1%}"
              f" of the bandwidth bound  {_memory_text(memory)}")
    return out


if __name__ == "__main__":
    main()
