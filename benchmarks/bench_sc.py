"""Self-consistency throughput: raftlab's hf backend vs two baselines, measured in the same run.

Baselines: **batched** (what a competent user writes: one ``model.generate(num_return_sequences=k)`` per batch of
questions, left-padded, the same stop strings) and **sequential** (the paper's scripts: k separate ``generate``
calls per question; slow, kept to show what the official approach costs). raftlab: questions batched, each prompt
prefilled once with its KV cache repeated for the k samples, finished sequences dropped from the batch. All use
the same model, prompts, temperature, max_new_tokens and stop strings. Prints questions/s, seconds per question,
generated tokens/s, peak memory and ratios against each baseline.

``--random-init llama-7b`` measures a model of that shape with random weights (no download; the spec's tokenizer),
e.g. on a GPU: random weights rarely emit EOS or a stop string, so every sample runs to ``--max-new-tokens``, which
makes the timing an upper bound for that length.

    .venv/bin/python benchmarks/bench_sc.py --model smollm2 --questions 4 --k 10
    python benchmarks/bench_sc.py --random-init llama-7b --dtype bfloat16 --questions 32 --k 10 --baselines batched
"""

from __future__ import annotations

import argparse
import threading
import time

import psutil

#: Shapes for ``--random-init`` (Llama-2-7B and the 135M SmolLM2 student).
SHAPES = {
    "llama-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                     num_key_value_heads=32),
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3),
}


class PeakRSS:
    """Peak resident memory of this process while the block runs (sampled every 20 ms)."""

    def __enter__(self):
        self.proc, self.peak, self._stop = psutil.Process(), 0, threading.Event()
        self._t = threading.Thread(target=self._watch, daemon=True)
        self._t.start()
        return self

    def _watch(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.02)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


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


def matmul_gflops(dtype, device: str, size: int = 1024, repeats: int = 20) -> float:
    """This machine's matrix-multiply rate in ``dtype`` (GFLOP/s, ``size``-cubed products, after a warm-up)."""
    import torch

    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    for _ in range(3):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    return 2 * size**3 * repeats / (time.perf_counter() - t0) / 1e9


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
    args = ap.parse_args()

    import torch

    from raftlab.backends.hf import HFBackend
    from raftlab.inference import DEFAULT_STOP
    from raftlab.models import load_tokenizer
    from raftlab.tasks import get_task

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, args.dtype) if args.dtype else None
    task = get_task(args.task)
    examples = task.load("test", limit=args.questions, seed=0, data_dir="packaged" if args.task in
                         ("gsm8k", "svamp", "creak") else None)
    prompts = [task.prompt(e, "cot") for e in examples]
    kv_mb = 512 if device == "cpu" else 60_000
    if args.random_init:
        tok = load_tokenizer(args.model)
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        model = _random_model(args.random_init, tok, dtype, device)
        backend = HFBackend(model, tokenizer=tok, device=device, batch_size=args.batch_size, kv_cache_mb=kv_mb)
    else:
        backend = HFBackend(args.model, dtype=args.dtype, device=device, batch_size=args.batch_size, kv_cache_mb=kv_mb)
        model, tok = backend.model, backend.tokenizer
    params = sum(p.numel() for p in model.parameters())
    print(f"model={args.random_init or args.model} ({params / 1e6:.0f}M params, {next(model.parameters()).dtype}) "
          f"device={device} task={args.task} questions={len(prompts)} k={args.k} T={args.temperature} "
          f"max_new_tokens={args.max_new_tokens} batch={args.batch_size} threads={torch.get_num_threads()}"
          + (f" gpu={torch.cuda.get_device_name()}" if device == "cuda" else ""))
    methods = {"batched": ("batched HF (one generate, num_return_sequences=k)", batched),
               "sequential": ("sequential HF (k generate calls per question)", sequential)}
    runs = [methods[b.strip()] for b in args.baselines.split(",") if b.strip()]
    runs.append(("raftlab (shared prefill, early drop)", None))
    results, tokens_by = {}, {}
    for name, fn in runs:
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        with PeakRSS() as mem, torch.inference_mode():
            t0, c0 = time.perf_counter(), time.process_time()
            if fn is None:
                toks = raftlab_sc(backend, prompts, args.k, args.temperature, args.max_new_tokens, DEFAULT_STOP,
                                  args.batch_size)
            else:
                toks = fn(model, tok, prompts, args.k, args.temperature, args.max_new_tokens, DEFAULT_STOP,
                          args.batch_size)
            if device == "cuda":
                torch.cuda.synchronize()
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        results[name] = (dt, cpu)
        tokens_by[name] = toks
        memory = (f"peak GPU {torch.cuda.max_memory_allocated() / 2**30:6.1f} GiB" if device == "cuda"
                  else f"peak RSS {mem.peak / 2**20:7.0f} MiB")
        print(f"{name:52s} {len(prompts) / dt:8.3f} questions/s  {dt / len(prompts):7.2f} s/question  "
              f"{toks / dt:9.1f} tokens/s  {toks:7d} tokens  {dt:7.1f} s wall  {cpu:7.1f} s CPU  {memory}")
    dtype_used = next(model.parameters()).dtype
    peak = matmul_gflops(dtype_used, device)
    ours, ours_cpu = results["raftlab (shared prefill, early drop)"]
    for name, (dt, _) in results.items():
        flops = 2 * params * tokens_by[name] / dt / 1e9  # weights' multiply-adds per generated token (no attention)
        print(f"{name:52s} {flops:7.1f} GFLOP/s in the weights = {flops / peak:5.1%} of this machine's "
              f"{str(dtype_used).removeprefix('torch.')} matmul rate ({peak:.0f} GFLOP/s, measured now)")
    results.pop("raftlab (shared prefill, early drop)")
    for name, (base, base_cpu) in results.items():
        print(f"speed-up vs {name}: {base / ours:.2f}x wall-clock, {base_cpu / ours_cpu:.2f}x CPU time")


if __name__ == "__main__":
    main()
