"""A deterministic "oracle teacher" for offline studies.

It is *not* a language model: for the synthetic tasks it writes the correct step-by-step rationale
programmatically from the question (arithmetic steps, coin states, the topic keyword), and for tasks
whose examples ship a human-written rationale (``meta["human_rationale"]``, e.g. GSM8K) it returns that
rationale. For anything else it answers that it does not know, which the gold filter rejects.
It implements the :class:`raftlab.backends.base.Backend` protocol so the rationale pipeline treats it
like any teacher.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from raftlab.backends.base import ContinuationScore, Generation, SamplingParams
from raftlab.schema import Example

_WORD_MULT = {"doubles": 2, "triples": 3, "quadruples": 4}


def arith_rationale(question: str) -> str | None:
    """Replay a ``synth_arith`` word problem step by step (None if a sentence is not understood)."""
    sentences = re.findall(r"[^.?]+[.?]", question)
    m = re.match(r"\s*(\w+) has (\d+) (.+?)\.$", sentences[0]) if sentences else None
    if not m:
        return None
    name, value, item = m.group(1), int(m.group(2)), m.group(3)
    steps = [f"{name} starts with {value} {item}."]
    for s in sentences[1:]:
        s = s.strip()
        if s.startswith("How many"):
            break
        if (m := re.search(r"finds (\d+) more|gives \w+ (\d+) more", s)):
            x = int(m.group(1) or m.group(2))
            steps.append(f"{value} + {x} = {value + x}.")
            value += x
        elif (m := re.search(r"(?:gives away|loses) (\d+)", s)):
            x = int(m.group(1))
            steps.append(f"{value} - {x} = {value - x}.")
            value -= x
        elif (m := re.search(r"(doubles|triples|quadruples)", s)):
            x = _WORD_MULT[m.group(1)]
            steps.append(f"{value} * {x} = {value * x}.")
            value *= x
        elif (m := re.search(r"among (\d+) boxes", s)):
            x = int(m.group(1))
            steps.append(f"{value} / {x} = {value // x}.")
            value //= x
        else:
            return None
    steps.append(f"So {name} has {value} {item} now.")
    return " ".join(steps)


def coinflip_rationale(question: str) -> str | None:
    """Track the coin through each person's action."""
    actions = re.findall(r"(\w+) (does not flip|flips) the coin", question)
    if not actions or "heads up" not in question:
        return None
    heads, steps = True, ["The coin starts heads up."]
    for name, act in actions:
        if act == "flips":
            heads = not heads
            steps.append(f"{name} flips it, so it is {'heads' if heads else 'tails'} up.")
        else:
            steps.append(f"{name} does not flip it, so it stays {'heads' if heads else 'tails'} up.")
    steps.append(f"In the end the coin is {'still heads' if heads else 'tails'} up.")
    return " ".join(steps)


def topic_rationale(question: str) -> str | None:
    """Name the topic keyword the text mentions."""
    from raftlab.tasks.synthetic import TOPIC_KEYWORDS

    for topic, words in TOPIC_KEYWORDS.items():
        for w in sorted(words, key=len, reverse=True):
            if re.search(rf"\b{re.escape(w)}\b", question):
                return f'The text mentions "{w}", which is about {topic}.'
    return None


def human_rationale(example: Example) -> str | None:
    """A dataset's own rationale (GSM8K style: ``<<calc>>`` annotations and the ``####`` line removed)."""
    text = example.meta.get("human_rationale") or example.rationale
    if not text:
        return None
    text = re.sub(r"<<[^>]*>>", "", str(text))
    text = re.sub(r"\n?####.*$", "", text, flags=re.S).strip()
    return " ".join(text.split()) or None


_GENERATOR_OF_TASK = {"coinflip": "coinflip", "synth_coinflip": "coinflip", "synth_topic": "keyword_topic",
                      "synth_arith": "multistep_arith", "synth_arith_easy": "multistep_arith",
                      "synth_arith_hard": "multistep_arith"}


def oracle_rationale(example: Example) -> str | None:
    """The oracle's rationale for an example (without the answer sentence), or None."""
    gen = example.meta.get("generator") or _GENERATOR_OF_TASK.get(example.task)
    if gen == "multistep_arith":
        return arith_rationale(example.question)
    if gen == "coinflip":
        return coinflip_rationale(example.question)
    if gen == "keyword_topic":
        return topic_rationale(example.question)
    return human_rationale(example)


class OracleTeacher:
    """Backend that answers a teacher prompt with the oracle rationale of the example it contains."""

    name = "oracle"
    thread_safe = False

    def __init__(self, task, examples: Iterable[Example]) -> None:
        self.task = task
        self._by_question: dict[str, str] = {}
        for ex in examples:
            rationale = oracle_rationale(ex)
            if rationale is not None:
                self._by_question[ex.question] = f"{rationale} The answer is {task.canonical_label(ex)}."
        self._questions = sorted(self._by_question, key=len, reverse=True)

    def answer(self, prompt: str) -> str:
        for q in self._questions:
            if q in prompt:
                return self._by_question[q]
        return "I do not know."

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Generation]]:
        out = []
        for p in prompts:
            text = self.answer(p)
            out.append([Generation(text=text, num_tokens=len(text.split()), finish_reason="stop")
                        for _ in range(max(1, params.n))])
        return out

    def score(self, prompts: list[str], continuations: list[str]) -> list[ContinuationScore]:
        raise NotImplementedError("the oracle teacher writes rationales; it cannot score text (use a model backend)")
