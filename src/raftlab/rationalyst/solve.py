"""Supervised step-by-step decoding: the rationale generator guides an agent model's next step.

At each step (at most ``max_steps``) the agent samples ``K`` candidate next steps (``T=0.7``); a step is one
sentence or line. The generator writes rationales greedily after ``<BOT>`` and stops at ``<EOT>``:

* ``implicit`` (the official code's ``world_model_perplexity`` heuristic, github JHU-CLSP/RATIONALYST
  ``sentence_inference_with_heuristics_*.py``): after each candidate the generator writes the rationale that
  follows it; the candidate whose rationale has the highest mean token log-probability is taken;
* ``implicit_given``: the generator writes one rationale for the steps so far and each candidate is scored by its
  mean log-probability given that rationale (the candidate-given-rationale variant; docs/rationalyst.md);
* ``explicit``: the rationale is appended to the agent's context and the agent writes the step;
* ``random``: one of the same K candidates at random (the baseline; same agent, same sampling seeds).

Empty candidates are never chosen; decoding ends early only if all K are empty.

Decoding stops when a step contains "The answer is".
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any, Literal

from raftlab.backends.base import Backend, SamplingParams
from raftlab.rationalyst.extract import BOT, EOT
from raftlab.rationalyst.pipeline import generator_prompt
from raftlab.rationalyst.scoring import length_normalised
from raftlab.rationalyst.store import StageStore
from raftlab.schema import INVALID, Example

Method = Literal["implicit", "implicit_given", "explicit", "random"]
METHODS: tuple[str, ...] = ("implicit", "implicit_given", "explicit", "random")
DEFAULT_METHODS: tuple[str, ...] = ("implicit", "explicit", "random")
#: recorded with the generator: stores whose ``implicit`` rows were scored otherwise are refused, not mixed
IMPLICIT_SCORING = "rationale after each candidate"
ANSWER_CUE = "The answer is"
STEP_STOPS: tuple[str, ...] = (". ", "? ", "! ")  # sentence ends; lines are cut in close_step


def close_step(text: str) -> str:
    """The first non-empty line of a generated step (cut at a stop string), with its sentence end restored.

    Leading newlines are skipped rather than taken as an empty step (a model often starts with one)."""
    text = text.strip().split("\n", 1)[0].strip()
    if text and not re.search(r"[.!?:]$", text):
        text += "."
    return text


def _history(prompt: str, steps: Sequence[str]) -> str:
    return prompt + "".join(" " + s for s in steps)


def _rationales(generator: Backend, question: str, histories: Sequence[Sequence[str]], max_tokens: int) -> list[str]:
    """The generator's greedy rationale after each history (question + steps), cut at ``<EOT>``."""
    ctxs = [generator_prompt(_history(question.strip(), steps)) for steps in histories]
    rows = generator.generate(ctxs, SamplingParams(n=1, temperature=0.0, max_new_tokens=max_tokens, stop=(EOT,)))
    return [row[0].text.replace(BOT, " ").strip() for row in rows]


def best_candidate(scores: Sequence[float]) -> int:
    """Index of the highest score (the first one on ties)."""
    if not scores:
        raise ValueError("no candidates to choose from")
    return max(range(len(scores)), key=lambda i: scores[i])


def solve_example(agent: Backend, generator: Backend | None, task: Any, example: Example, method: Method, *,
                  k: int = 3, temperature: float = 0.7, max_steps: int = 15, max_step_tokens: int = 64,
                  max_rationale_tokens: int = 48, seed: int = 0) -> dict[str, Any]:
    """Decode one question step by step; returns steps, rationales, candidate scores, prediction, correctness."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    if method != "random" and generator is None:
        raise ValueError(f"method {method!r} needs a rationale generator")
    rng = random.Random(f"{seed}|{example.id}")
    prompt = task.prompt(example, "cot")
    steps: list[str] = []
    rationales: list[str] = []
    scores_log: list[list[float]] = []
    after_log: list[list[str]] = []
    for step in range(max_steps):
        params = SamplingParams(n=k, temperature=temperature, max_new_tokens=max_step_tokens, stop=STEP_STOPS,
                                seed=seed * 1000 + step)
        rationale = ""
        if method in ("explicit", "implicit_given"):
            [rationale] = _rationales(generator, example.question, [steps], max_rationale_tokens)
        if method == "explicit":
            rationales.append(rationale)
            ctx = _history(prompt, steps) + (f" {rationale}" if rationale else "")
            [cands] = agent.generate([ctx], SamplingParams(**{**params.to_dict(), "n": 1, "stop": STEP_STOPS}))
            chosen = close_step(cands[0].text)
        else:
            [cands] = agent.generate([_history(prompt, steps)], params)
            texts = [close_step(c.text) for c in cands]
            usable = [i for i, t in enumerate(texts) if t]
            if not usable:
                break
            if method == "random":
                pick = rng.choice(usable)
            else:
                values = [float("-inf")] * len(texts)
                if method == "implicit":  # score the rationale each candidate leads to
                    after = _rationales(generator, example.question, [[*steps, texts[i]] for i in usable],
                                        max_rationale_tokens)
                    ctxs = [generator_prompt(_history(example.question.strip(), [*steps, texts[i]])) for i in usable]
                    scored = generator.score(ctxs, after)
                    after_log.append([""] * len(texts))
                    for i, r, sc in zip(usable, after, scored):
                        after_log[-1][i] = r
                        values[i] = length_normalised(sc.token_logprobs if r else [])
                else:  # score each candidate given the rationale written before it
                    gctx = f"{generator_prompt(_history(example.question.strip(), steps))}{rationale}{EOT}"
                    scored = generator.score([gctx] * len(texts), [" " + t for t in texts])
                    values = [length_normalised(sc.token_logprobs) if t else values[i]
                              for i, (sc, t) in enumerate(zip(scored, texts))]
                scores_log.append(values)
                pick = usable[best_candidate([values[i] for i in usable])]
                rationale = after_log[-1][pick] if method == "implicit" else rationale
            rationales.append(rationale)
            chosen = texts[pick]
        if not chosen:
            break
        steps.append(chosen)
        if ANSWER_CUE.lower() in chosen.lower():
            break
    pred = task.extract(" ".join(steps), example)
    return {"id": example.id, "method": method, "steps": steps, "rationales": rationales,
            "candidate_scores": scores_log, **({"candidate_rationales": after_log} if method == "implicit" else {}),
            "prediction": pred,
            "correct": bool(pred != INVALID and task.is_correct(pred, example)), "gold": example.label}


def solve_settings(agent: Backend, generator: Backend | None, task: Any, **kw: Any) -> dict[str, Any]:
    """What a stored solve result depends on (besides the method and the example)."""
    defaults = {"k": 3, "temperature": 0.7, "max_steps": 15, "max_step_tokens": 64, "max_rationale_tokens": 48,
                "seed": 0}
    unknown = set(kw) - set(defaults)
    if unknown:
        raise TypeError(f"unknown solve settings: {sorted(unknown)}")
    return {"task": task.name, "agent": _backend_id(agent),
            "generator": _backend_id(generator) if generator is not None else None, **defaults, **kw}


def _backend_id(backend: Backend) -> str:
    return str(getattr(backend, "model_name", None) or getattr(backend, "name", type(backend).__name__))


def solve(agent: Backend, generator: Backend | None, task: Any, examples: Sequence[Example], store: StageStore, *,
          methods: Sequence[str] = DEFAULT_METHODS, progress: bool = True, **kw: Any) -> dict[str, dict[str, float]]:
    """Run each method on every example (resumable: finished (task, method, example) results are skipped).

    The settings (agent, K, T, seed, ...) are recorded per task on the first run, and the generator on the first
    run of a supervised method (so a random-only run can be followed by an implicit one); a rerun with other
    settings in the same store raises instead of mixing results.
    """
    from tqdm.auto import tqdm

    for m in methods:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    settings = solve_settings(agent, generator, task, **kw)
    generator_id = settings.pop("generator")
    store.check_settings(_settings_key(task.name), settings)  # shared by all methods, so results stay paired
    if any(m != "random" for m in methods):  # the random baseline never uses the generator
        store.check_settings(_settings_key(task.name, "generator"),
                             {"generator": generator_id, "implicit_scoring": IMPLICIT_SCORING})
    for method in methods:
        for ex in tqdm(examples, desc=f"rationalyst solve [{method}]", disable=not progress):
            key = f"{task.name}|{method}|{ex.id}"
            if not store.has("solve", key):
                store.put("solve", key, solve_example(agent, generator, task, ex, method, **kw))
    return solve_summary(store, task.name, [ex.id for ex in examples], methods)


def _settings_key(task_name: str, part: str = "") -> str:
    return f"solve:{task_name}" + (f":{part}" if part else "")


def stored_solve_settings(store: StageStore, task_name: str) -> dict[str, Any]:
    """The settings recorded by :func:`solve` for ``task_name`` (``generator`` is None until a supervised run)."""
    stored = dict(store.items("settings"))
    return {**stored[_settings_key(task_name)],
            **stored.get(_settings_key(task_name, "generator"), {"generator": None})}


def solve_summary(store: StageStore, task_name: str, ids: Sequence[str],
                  methods: Sequence[str]) -> dict[str, dict[str, float]]:
    """Accuracy, count and mean number of steps per method over ``ids``."""
    results = dict(store.items("solve"))
    out = {}
    for m in methods:
        rows = [results[f"{task_name}|{m}|{i}"] for i in ids if f"{task_name}|{m}|{i}" in results]
        out[m] = {"n": len(rows), "accuracy": sum(r["correct"] for r in rows) / max(1, len(rows)),
                  "mean_steps": sum(len(r["steps"]) for r in rows) / max(1, len(rows))}
    return out
