"""Continuous batching: the same self-consistency sampling with batches that drain against one that stays full.

Both runs use one raftlab ``hf`` backend (cascade attention on a CPU) that decodes ``--concurrency`` questions at a
time, each with ``--k`` samples, on the same questions and seeds:

* **drained batches** (the baseline, how an eval called the backend before): one ``generate`` call per
  ``--concurrency`` questions, so each batch decodes until its longest sample ends while its finished rows sit
  idle;
* **continuous**: one call with every question; as a question's samples finish, the next question is
  prefilled and joins the batch.

A sample's draws depend only on its seed and token index, so both runs sample from the same distributions; in
bf16 the different prefill groupings round differently, so the texts are not identical. The script prints wall
time, generated tokens/s and the speed-up, and writes them with the machine and versions. The study's evals send
64 questions per call (``raftlab.inference.QUESTIONS_PER_CALL``); run it as the study does (2 threads):

    .venv/bin/python benchmarks/bench_continuous.py --model smollm2 --task gsm8k --questions 64 --k 4
"""

from __future__ import annotations

import argparse
import time

from results_io import add_out_argument, headline, ratio, slug, write_result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--task", default="gsm8k")
    ap.add_argument("--questions", type=int, default=64)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--concurrency", type=int, default=10, help="questions decoding at once (the study's "
                                                                 "eval.batch_size)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    add_out_argument(ap, "benchmarks/results/continuous_<model>_<task>_cpu.json")
    args = ap.parse_args()

    import torch

    from raftlab.backends.base import SamplingParams
    from raftlab.backends.hf import HFBackend
    from raftlab.inference import DEFAULT_STOP
    from raftlab.tasks import get_task
    from raftlab.tasks.answers import answer_stop_pattern

    if args.threads:
        torch.set_num_threads(args.threads)
    task = get_task(args.task)
    examples = task.load("test", limit=args.questions, seed=0, data_dir="packaged" if args.task in
                         ("gsm8k", "svamp", "creak") else None)
    prompts = [task.prompt(e, "cot") for e in examples]
    backend = HFBackend(args.model, device="cpu", batch_size=args.concurrency)
    backend.warm_up()
    params = SamplingParams(n=args.k, temperature=args.temperature, max_new_tokens=args.max_new_tokens,
                            stop=tuple(DEFAULT_STOP), seed=0, stop_regex=answer_stop_pattern(task.answer_type))
    c = args.concurrency
    runs = {"drained": ("drained batches (one call per batch)",
                        lambda: [g for i in range(0, len(prompts), c) for g in backend.generate(prompts[i:i + c],
                                                                                                  params)]),
            "continuous": ("continuous batch (one call)", lambda: backend.generate(prompts, params))}
    print(f"model={args.model} task={args.task} questions={len(prompts)} k={args.k} T={args.temperature} "
          f"max_new_tokens={args.max_new_tokens} concurrency={c} threads={torch.get_num_threads()}")
    measured = {}
    for key, (name, work) in runs.items():
        started = time.perf_counter()
        rows = work()
        seconds = time.perf_counter() - started
        tokens = sum(g.num_tokens for row in rows for g in row)
        correct = sum(task.is_correct(answer, e) for e, row in zip(examples, rows)
                      for answer in [task.extract(g.text, e) for g in row])
        measured[key] = {"name": name, "seconds": round(seconds, 2), "tokens": tokens,
                         "tokens_per_s": round(tokens / seconds, 1),
                         "sample_accuracy": round(correct / (len(prompts) * args.k), 4)}
        print(f"{name:40s} {seconds:7.1f} s  {tokens:7d} tokens  {tokens / seconds:7.1f} tokens/s  "
              f"sample accuracy {measured[key]['sample_accuracy']:.3f}")
    speedup = measured["drained"]["seconds"] / measured["continuous"]["seconds"]
    print(f"continuous / drained: {speedup:.2f}x wall-clock")
    settings = {"model": args.model, "task": args.task, "questions": len(prompts), "k": args.k,
                "temperature": args.temperature, "max_new_tokens": args.max_new_tokens, "concurrency": c,
                "dtype": str(next(backend.model.parameters()).dtype).removeprefix("torch.")}
    write_result("continuous_batching", {"settings": settings, "methods": measured,
                                         "headline": [headline("continuous", measured["continuous"]["tokens_per_s"],
                                                               "tokens/s"),
                                                      headline("drained", measured["drained"]["tokens_per_s"],
                                                               "tokens/s")],
                                         "ratios": [ratio("continuous / drained batches, wall-clock", speedup)]},
                 name=slug("continuous", args.model, args.task, "cpu"), out=args.out, save=not args.no_save,
                 device="cpu")


if __name__ == "__main__":
    main()
