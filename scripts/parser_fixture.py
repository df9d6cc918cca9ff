"""Collect real model outputs for the answer-parser fixture (tests/data/parser_fixture.jsonl).

    .venv/bin/python scripts/parser_fixture.py collect RUN [RUN ...] --zero-shot 12 --out /tmp/candidates.jsonl

Reads every ``RUN/eval/<arm>/<task>/records.jsonl`` of the given study runs (finetuned and untrained arms) and, with
``--zero-shot N``, also samples the untrained SmolLM2 with the zero-shot CoT prompt on N test questions of each of
``--tasks`` (2 samples each). Writes one candidate per output with the task's answer spec (type, letters, accepted
texts) and what the parser reads today; a person then adds the answer they read (``person``) and, where it
differs from the parser, a reason. Questions are not stored, only outputs.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

TASKS = ("gsm8k", "svamp", "creak", "synth_topic", "synth_coinflip", "synth_arith")


def spec_dict(task, example) -> dict:
    spec = task.answer_spec(example)
    return {"answer_type": spec.answer_type, "option_letters": spec.option_letters, "verbalizers": spec.verbalizers}


def from_runs(runs: list[Path], per_group: int, rng: random.Random) -> list[dict]:
    from raftlab.schema import Example
    from raftlab.storage import read_jsonl
    from raftlab.tasks import get_task

    out = []
    for run in runs:
        for records in sorted(run.glob("eval/*/*/records.jsonl")):
            arm, task_name = records.parent.parent.name, records.parent.name
            task = get_task(task_name)
            tests = {e["id"]: Example.model_validate(e) for e in read_jsonl(run / "data" / task_name / "test.jsonl")}
            samples = [(r["id"], i, s) for r in read_jsonl(records) for i, s in enumerate(r.get("samples") or [])]
            for qid, i, text in rng.sample(samples, min(per_group, len(samples))):
                out.append({"id": f"{run.name}/{arm}/{qid}/{i}", "source": f"smollm2 {arm} ({run.name})",
                            "task": task_name, "spec": spec_dict(task, tests[qid]), "output": text,
                            "gold": tests[qid].label})
    return out


def zero_shot(tasks: list[str], n: int, seed: int) -> list[dict]:
    from raftlab.backends.base import SamplingParams
    from raftlab.backends.hf import HFBackend
    from raftlab.inference import DEFAULT_STOP
    from raftlab.tasks import get_task

    backend = HFBackend("smollm2", batch_size=8)  # prompts per forward, each with its 2 samples
    out = []
    for name in tasks:
        task = get_task(name)
        examples = task.load("test", "packaged" if not task.data.synthetic else None, limit=n, seed=seed)
        rows = backend.generate([task.prompt(e, "cot") for e in examples],
                                SamplingParams(n=2, temperature=0.8, max_new_tokens=160, stop=DEFAULT_STOP, seed=seed))
        for e, row in zip(examples, rows):
            for i, g in enumerate(row):
                out.append({"id": f"zero-shot/{e.id}/{i}", "source": "smollm2 untrained, zero-shot CoT",
                            "task": name, "spec": spec_dict(task, e), "output": g.text, "gold": e.label})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["collect"])
    ap.add_argument("runs", nargs="*", type=Path)
    ap.add_argument("--per-group", type=int, default=10, help="outputs sampled per run x arm x task")
    ap.add_argument("--zero-shot", type=int, default=0, help="questions per task for zero-shot samples")
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    from raftlab.tasks.answers import AnswerSpec, extract_answer

    rng = random.Random(args.seed)
    rows = from_runs(args.runs, args.per_group, rng)
    if args.zero_shot:
        rows += zero_shot(args.tasks.split(","), args.zero_shot, args.seed)
    with args.out.open("w", encoding="utf-8") as fh:
        for r in rows:
            s = r["spec"]
            r["parser"] = extract_answer(r["output"], AnswerSpec(s["answer_type"], s["option_letters"], s["verbalizers"]))
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{len(rows)} candidates -> {args.out}")


if __name__ == "__main__":
    main()
