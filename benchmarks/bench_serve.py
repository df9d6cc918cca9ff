"""`raftlab serve` throughput with many concurrent clients: batched scheduling vs one request at a time.

Both servers run in this process over loopback with the same model; ``--clients`` threads each send one completion
request (distinct prompts, the same sampling settings, as an eval or teacher client does) at the same moment.
The baseline is the server before batching: a lock, one request at a time (``create_app(batching=False)``, the
same code path otherwise). Prints wall time, completion tokens/s, requests/s and the ratio, measured in the same run,
and writes them as JSON to ``benchmarks/results/serve_<model>_c<clients>.json`` (``--out``;
``benchmarks/results_io.py``).

    taskset -c 1 .venv/bin/python benchmarks/bench_serve.py --model smollm2 --clients 20
"""

from __future__ import annotations

import argparse
import concurrent.futures
import time
from pathlib import Path

from results_io import add_out_argument, headline, ratio, slug, write_result


def run_clients(url: str, prompts: list[str], max_tokens: int, temperature: float) -> tuple[float, int]:
    import httpx

    def one(prompt: str) -> int:
        r = httpx.post(f"{url}/completions", json={"prompt": prompt, "max_tokens": max_tokens,
                                                   "temperature": temperature, "seed": 0}, timeout=3600)
        r.raise_for_status()
        return r.json()["usage"]["completion_tokens"]

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(len(prompts)) as pool:
        tokens = sum(pool.map(one, prompts))
    return time.perf_counter() - t0, tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (pin the process with taskset too)")
    add_out_argument(ap, "benchmarks/results/serve_<model>_c<clients>.json")
    args = ap.parse_args()

    import torch

    from raftlab.backends.hf import HFBackend
    from raftlab.serve import serve_in_thread
    from raftlab.tasks import get_task

    torch.set_num_threads(args.threads)
    task = get_task("gsm8k")
    examples = task.load("test", limit=args.clients, seed=0, data_dir="packaged")
    prompts = [task.prompt(e, "cot") for e in examples]
    backend = HFBackend(args.model)
    print(f"model={args.model} clients={len(prompts)} max_tokens={args.max_tokens} T={args.temperature} "
          f"threads={torch.get_num_threads()}")
    results = {}
    for key, label, batching in (("one_at_a_time", "one request at a time (before)", False),
                                 ("batched", "batched (raftlab serve)", True)):
        url, stop = serve_in_thread(backend, model_name=args.model, batching=batching)
        try:
            dt, tokens = run_clients(url, prompts, args.max_tokens, args.temperature)
        finally:
            stop()
        results[key] = {"name": label, "seconds": round(dt, 3), "completion_tokens": tokens,
                        "completion_tokens_per_s": round(tokens / dt, 2), "requests_per_s": round(len(prompts) / dt, 3)}
        print(f"{label:32s} {dt:7.1f} s wall  {tokens / dt:8.1f} completion tokens/s  "
              f"{len(prompts) / dt:6.2f} requests/s  ({tokens} tokens)")
    speedup = results["one_at_a_time"]["seconds"] / results["batched"]["seconds"]
    print(f"speed-up (requests/s, batched / one at a time): {speedup:.2f}x")
    settings = {"model": args.model, "clients": len(prompts), "max_tokens": args.max_tokens,
                "temperature": args.temperature, "threads": torch.get_num_threads(), "task": "gsm8k"}
    heads = [headline("batched", results["batched"]["completion_tokens_per_s"], "completion tokens/s"),
             headline("batched", results["batched"]["requests_per_s"], "requests/s")]
    write_result("serve_throughput", {"settings": settings, "servers": results, "headline": heads,
                                      "ratios": [ratio("batched / one at a time, requests/s", speedup)]},
                 name=slug("serve", Path(args.model).name, f"c{len(prompts)}"), out=args.out,
                 save=not args.no_save, device="cpu")


if __name__ == "__main__":
    main()
