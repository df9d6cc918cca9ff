"""How many questions a self-consistency evaluation should decode together: seconds per question by batch size.

A study's ``eval.batch_size`` is the number of questions decoding at once, each with its ``k`` samples: the study
hands the backend 64 questions per call (``QUESTIONS_PER_CALL``) and the backend decodes ``batch_size`` of them at
a time, the next joining as their samples finish. This evaluates one model on the same seeded test questions the
same way at each batch size, in one process (one warm-up evaluation first, so no size pays the one-time kernel
load), and reports seconds and generated tokens per question. Rates are per wall
second with torch's threads as stated (a study stage uses all of the cores it is given). E.g. the RAFT model of
a real-preset run on SUBJ:

    RAFTLAB_DATA_DIR=../shared/datasets .venv/bin/python benchmarks/bench_eval_batch.py \
        --model runs/real-s0/train/raft/subj/model --task subj --questions 128 --batch-sizes 10,32

Writes ``benchmarks/results/eval_batch_<task>_<cpu|cuda>.json``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from results_io import add_out_argument, headline, slug, write_result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a trained model's folder (or a model spec)")
    ap.add_argument("--task", default="subj")
    ap.add_argument("--questions", type=int, default=128, help="seeded random test questions")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--batch-sizes", default="10,32", help="comma-separated; the first is the baseline")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=None)
    add_out_argument(ap, "benchmarks/results/eval_batch_<task>_<device>.json")
    args = ap.parse_args()

    import torch

    from raftlab.backends import get_backend
    from raftlab.inference import QUESTIONS_PER_CALL, evaluate
    from raftlab.inference.evaluate import resolved_prompt_mode
    from raftlab.tasks import get_task
    from raftlab.training.budget import budget_for_model

    device = "cuda" if torch.cuda.is_available() else "cpu"  # where the hf backend runs the model
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    task = get_task(args.task)
    questions = task.load("test", data_dir=args.data_dir, limit=args.questions, seed=args.seed)
    budget = budget_for_model(args.model, task, resolved_prompt_mode("sc", None))
    max_new_tokens = budget.need if budget is not None else 256
    spec = args.model if ":" in args.model else f"hf:{args.model}"

    def run(batch_size: int, examples) -> dict:
        backend = get_backend(spec, {}, batch_size=batch_size)
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            metrics = evaluate(backend, task, examples, mode="sc", k=args.k, temperature=args.temperature,
                               max_new_tokens=max_new_tokens, seed=args.seed, out_dir=Path(out),
                               batch_size=max(batch_size, QUESTIONS_PER_CALL), progress=False)
            seconds = time.perf_counter() - start
        return {"batch_size": batch_size, "seconds": round(seconds, 2),
                "seconds_per_question": round(seconds / len(examples), 4),
                "tokens_per_question": round(metrics["tokens_per_question"], 1),
                "tokens_per_s": round(metrics["tokens_per_question"] * len(examples) / seconds, 1),
                "accuracy": metrics["accuracy"]}

    run(sizes[0], questions[:2])  # warm-up: the native kernels load once per process
    rows = []
    for size in sizes:
        rows.append(run(size, questions))
        print(f"batch {size:>3}: {rows[-1]['seconds_per_question']:.3f} s/question, "
              f"{rows[-1]['tokens_per_s']:.1f} tokens/s, accuracy {rows[-1]['accuracy']:.3f}")
    base = rows[0]
    settings = {"model": args.model, "task": args.task, "questions": len(questions), "k": args.k,
                "temperature": args.temperature, "max_new_tokens": max_new_tokens, "seed": args.seed,
                "questions_per_call": QUESTIONS_PER_CALL,
                "threads": torch.get_num_threads()}
    write_result("eval_batch", {
        "settings": settings, "unit": "seconds per question (wall)", "runs": rows,
        "headline": [headline(f"batch {r['batch_size']}", r["seconds_per_question"], "s/question") for r in rows],
        "ratios": [{"label": f"batch {r['batch_size']} / batch {base['batch_size']}, questions per second",
                    "value": round(base["seconds_per_question"] / r["seconds_per_question"], 3)} for r in rows[1:]],
    }, name=slug("eval_batch", args.task, device), out=args.out, save=not args.no_save, device=device)


if __name__ == "__main__":
    main()
