"""Direct, CoT and self-consistency evaluation with per-question records that resume after an interrupt."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from raftlab.backends import describe_backend
from raftlab.backends.base import Backend, SamplingParams
from raftlab.backends.sampling_knobs import EVAL_DEFAULTS
from raftlab.corrupt import read_json
from raftlab.inference.records import read_records
from raftlab.inference.voting import majority_vote
from raftlab.machine import describe_machine
from raftlab.schema import INVALID, Example
from raftlab.tasks.answers import answer_stop_pattern, cut_at_answer
from raftlab.storage import JsonlAppender, bind_settings_file, write_json

Mode = Literal["sc", "cot", "direct", "direct_prob"]
DEFAULT_STOP = ("\nHere is the question:", "\n\nQuestion:")


class EvalInterrupted(RuntimeError):
    """Raised by ``stop_after`` (tests, time budgets): records written so far are kept."""


def resolved_prompt_mode(mode: str, prompt_mode: str | None) -> str:
    """The prompt an eval uses: ``prompt_mode`` if given, else direct for direct modes and cot otherwise."""
    if prompt_mode is not None:
        if prompt_mode not in ("cot", "direct"):
            raise ValueError(f"prompt_mode must be 'cot' or 'direct', not {prompt_mode!r}")
        return prompt_mode
    return "direct" if mode in ("direct", "direct_prob") else "cot"


def _sampling(mode: str, k: int, temperature: float, top_p: float, top_k: int, max_new_tokens: int,
              stop: Sequence[str], seed: int, stop_regex: str | None = None) -> SamplingParams:
    if mode == "sc":
        return SamplingParams(n=k, temperature=temperature, top_p=top_p, top_k=top_k,
                              max_new_tokens=max_new_tokens, stop=tuple(stop), seed=seed, stop_regex=stop_regex)
    return SamplingParams(n=1, temperature=0.0, max_new_tokens=max_new_tokens, stop=tuple(stop), seed=seed,
                          stop_regex=stop_regex)


def _sample_records(task: Any, examples: list[Example], backend: Backend, prompts: list[str],
                    params: SamplingParams, mode: str) -> list[dict[str, Any]]:
    out = []
    for ex, gens in zip(examples, backend.generate(prompts, params)):
        for g in gens:  # backends that cannot stop on a regex: cut the text where the answer sentence ends
            g.text, cut = cut_at_answer(g.text, params.stop_regex)
            if cut:
                g.finish_reason = "stop"
        answers = [task.extract(g.text, ex) for g in gens]
        pred, conf, votes = majority_vote(answers)
        out.append({"id": ex.id, "task": ex.task, "gold": ex.label, "prediction": pred, "confidence": conf,
                    "correct": bool(pred != INVALID and task.is_correct(pred, ex)), "votes": votes,
                    "k": len(gens), "mode": mode, "samples": [g.text for g in gens], "answers": answers,
                    "num_tokens": [g.num_tokens for g in gens], "finish": [g.finish_reason for g in gens],
                    "question": ex.question, "labels": list(ex.option_letters)})
    return out


def _prob_records(task: Any, examples: list[Example], backend: Backend, prompts: list[str]) -> list[dict[str, Any]]:
    """Label-probability confidence: softmax over the log-probs of each option's answer sentence."""
    pairs = []
    for ex, p in zip(examples, prompts):
        if ex.answer_type != "choice" or not ex.option_letters:
            raise ValueError(f"{ex.id}: mode 'direct_prob' needs a choice task with options")
        pairs += [(p, task.target(ex.model_copy(update={"label": letter}))) for letter in ex.option_letters]
    scores = backend.score([p for p, _ in pairs], [c for _, c in pairs])
    out, pos = [], 0
    for ex in examples:
        totals = [s.total for s in scores[pos : pos + len(ex.option_letters)]]
        pos += len(ex.option_letters)
        top = max(totals)
        weights = [math.exp(t - top) for t in totals]
        probs = {letter: w / sum(weights) for letter, w in zip(ex.option_letters, weights)}
        pred = max(probs, key=probs.get)
        out.append({"id": ex.id, "task": ex.task, "gold": ex.label, "prediction": pred, "confidence": probs[pred],
                    "correct": bool(task.is_correct(pred, ex)), "votes": {}, "k": 1, "mode": "direct_prob",
                    "probs": probs, "samples": []})
    return out


#: Questions per ``generate`` call of an evaluation (``raftlab eval`` and a study's): a local backend decodes its
#: ``batch_size`` of them at a time and, as their samples finish, the next ones join (continuous batching), so its
#: batch drains once per call, not once per ``batch_size`` questions. Records are written (and a rerun resumes)
#: per call.
QUESTIONS_PER_CALL = 64


def evaluate(
    backend: Backend,
    task: Any,
    examples: Sequence[Example],
    *,
    mode: Mode = "sc",
    k: int = 10,
    temperature: float = EVAL_DEFAULTS.temperature,
    top_p: float = EVAL_DEFAULTS.top_p,
    top_k: int = EVAL_DEFAULTS.top_k,
    max_new_tokens: int = EVAL_DEFAULTS.max_new_tokens,
    stop: Sequence[str] = DEFAULT_STOP,
    seed: int = EVAL_DEFAULTS.seed,
    out_dir: str | Path | None = None,
    prompt_mode: str | None = None,
    batch_size: int = 4,
    progress: bool = True,
    stop_after: int | None = None,
    stop_at_answer: bool = True,
) -> dict[str, Any]:
    """Evaluate ``examples`` and return the metrics (``raftlab.metrics.summarize`` + counts).

    ``mode``: ``sc`` (k samples at ``temperature``, majority vote, confidence = vote share), ``cot`` or ``direct``
    (one greedy answer, confidence 1), ``direct_prob`` (softmax over the options' answer log-probs).
    The sampling knobs (``temperature``, ``top_p``, ``top_k``, ``max_new_tokens``, ``seed``) mean, are bounded and
    default as :class:`raftlab.backends.sampling_knobs.SamplingKnobs` says; one that the mode samples with and that
    is out of bounds is a ValueError.
    ``prompt_mode`` picks the prompt ("cot" adds "Let's think step by step."; default: ``cot`` for sc/cot,
    ``direct`` otherwise): label-only finetuned models are evaluated with the direct prompt.
    ``stop_at_answer``: stop sampling once the answer sentence is complete ("The answer is 18." followed by
    whitespace; :func:`raftlab.tasks.answers.answer_stop_pattern`) and cut the text there, so a model that
    writes on after its answer neither spends tokens on it nor gets a later cue misread.
    With ``out_dir``, records are appended to ``records.jsonl`` batch by batch and a rerun skips finished
    questions; rerunning with different settings raises :class:`SettingsMismatch`.
    """
    from tqdm.auto import tqdm

    from raftlab.metrics import summarize

    if mode not in ("sc", "cot", "direct", "direct_prob"):
        raise ValueError(f"unknown mode {mode!r}; choose sc, cot, direct or direct_prob")
    if mode == "sc" and k < 1:
        raise ValueError("k must be at least 1")
    examples = list(examples)
    pmode = resolved_prompt_mode(mode, prompt_mode)
    params = _sampling(mode, k, temperature, top_p, top_k, max_new_tokens, stop, seed,
                       answer_stop_pattern(task.answer_type) if stop_at_answer else None)
    settings = {"task": task.name, "mode": mode, "prompt_mode": pmode, "sampling": params.to_dict(),
                "model": describe_backend(backend), "n_examples": len(examples),
                "example_ids_hash": _ids_hash(examples)}
    done: dict[str, dict[str, Any]] = {}
    writer = None
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if (out / "settings.json").exists():  # damaged: an error naming it (storage's reader would not)
            read_json(out / "settings.json", "delete the eval folder and evaluate again, or use another --out")
        bind_settings_file(out / "settings.json", settings, hint="use another --out or delete the directory")
        existing = read_records(out / "records.jsonl")
        done = {r["id"]: r for r in existing}
        writer = JsonlAppender(out / "records.jsonl", existing)
    ids = [ex.id for ex in examples]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{task.name}: example ids are not unique")
    bar = tqdm(total=len(examples), desc=f"eval {task.name} [{mode}]", unit="q", disable=not progress)
    bar.update(sum(1 for i in ids if i in done))
    finished_batches = 0
    try:
        for start in range(0, len(examples), batch_size):
            chunk = examples[start : start + batch_size]
            if all(ex.id in done for ex in chunk):
                continue
            prompts = [task.prompt(ex, pmode) for ex in chunk]
            started = time.perf_counter()
            if mode == "direct_prob":
                records = _prob_records(task, chunk, backend, prompts)
            else:
                records = _sample_records(task, chunk, backend, prompts, params, mode)
            seconds = (time.perf_counter() - started) / len(chunk)  # the batch's wall time, shared equally
            for r in records:
                r["seconds"] = seconds
            new = [r for r in records if r["id"] not in done]
            for r in new:
                done[r["id"]] = r
            if writer:
                writer.write_batch(new)
            bar.update(len(new))
            finished_batches += 1
            if stop_after is not None and finished_batches >= stop_after:
                raise EvalInterrupted(f"stopped after {finished_batches} batches as asked")
    finally:
        bar.close()
        if writer:
            writer.close()
    ordered = [done[i] for i in ids]
    metrics = summarize([r["confidence"] for r in ordered], [r["correct"] for r in ordered],
                        k=k if mode == "sc" else None)
    metrics["invalid_rate"] = sum(r["prediction"] == INVALID for r in ordered) / max(1, len(ordered))
    metrics.update({"task": task.name, "mode": mode, "prompt_mode": pmode, "k": k if mode == "sc" else 1})
    metrics.update(cost_of(ordered))
    metrics["machine"] = describe_machine(getattr(backend, "device", None))
    if out_dir is not None:
        write_json(Path(out_dir) / "metrics.json", _finite(metrics))
    return metrics


def cost_of(records: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """``tokens_per_question`` (generated tokens, all samples) and ``seconds_per_question`` (wall time of the
    question's batch divided by its questions; records written before raftlab timed batches have none)."""
    tokens = [sum(r.get("num_tokens") or []) for r in records]
    seconds = [float(r["seconds"]) for r in records if isinstance(r.get("seconds"), (int, float))]
    return {"tokens_per_question": sum(tokens) / len(tokens) if tokens else None,
            "seconds_per_question": sum(seconds) / len(seconds) if seconds else None}


def _ids_hash(examples: Sequence[Example]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(ex.id for ex in examples).encode()).hexdigest()[:16]


def _finite(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}
