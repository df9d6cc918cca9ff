"""The gold filter: which teacher outputs become training rationales.

A teacher output is kept only if it is worth training on:

1. its answer (the last parseable answer statement) is the gold answer;
2. no answer statement anywhere in it disagrees with gold ("The answer is (A). ... The answer is (B)." is
   rejected even when the last one is right). The teacher's generation stops at its first complete answer
   sentence (:mod:`raftlab.rationales.generate`), so its first cue decides, as in the paper's official code;
   this rule also catches the statements the stop pattern does not ("(A) is correct ... The answer is (B).");
3. the rationale kept is the reasoning before the output's *first* answer statement (when every statement
   agrees, as rule 2 demands, what follows the first one only repeats it), and it states no answer at all, so RAFT
   never learns to write an answer before its reasoning ("The answer is (B). The answer is (B)" has no reasoning
   and is rejected; an answer cue that cannot be cut off, such as "(B) is correct" mid-text, rejects the output);
4. it is more than a restated prompt: it holds a word the teacher's prompt does not contain, and less than
   :data:`MAX_COPIED` of its word 4-grams are copied from the prompt (a restated question or option list is
   rejected; "The text mentions 'sourdough bread', which is about food." is kept).

Each rejection has a reason (:data:`REASONS`), stored with the attempt and counted in the run's stats.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from raftlab.schema import INVALID, Example
from raftlab.tasks.answers import answer_statements, strip_answer_sentence

#: Share of a rationale's word 4-grams found in its prompt at which it counts as a restated prompt.
MAX_COPIED = 0.8

WRONG, UNPARSEABLE, CONFLICTING, ANSWER_INSIDE, NO_RATIONALE, RESTATES = (
    "wrong answer", "unparseable answer", "conflicting answers", "answer stated inside the rationale",
    "no rationale before the answer", "restates the prompt")
#: Every rejection reason, in the order the checks run.
REASONS = (UNPARSEABLE, WRONG, CONFLICTING, ANSWER_INSIDE, NO_RATIONALE, RESTATES)

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


@dataclass(frozen=True)
class Verdict:
    """The filter's decision on one teacher output: its parsed answer, and the rationale to keep or the reason
    it was rejected."""

    answer: str
    rationale: str | None
    reason: str | None

    @property
    def kept(self) -> bool:
        return self.rationale is not None


def new_words(rationale: str, prompt: str) -> set[str]:
    """The rationale's words (lower case) that its prompt does not contain."""
    return set(_WORD.findall(rationale.lower())) - set(_WORD.findall(prompt.lower()))


def copied_share(rationale: str, prompt: str, n: int = 4) -> float:
    """Share of the rationale's word ``n``-grams that occur in the prompt (0 when it has fewer than ``n`` words)."""
    def grams(text: str) -> list[tuple[str, ...]]:
        words = _WORD.findall(text.lower())
        return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]

    own, theirs = grams(rationale), set(grams(prompt))
    return sum(g in theirs for g in own) / len(own) if own else 0.0


def restates(rationale: str, prompt: str) -> bool:
    """The rationale adds nothing to its prompt: no new word, or mostly copied 4-grams."""
    return not new_words(rationale, prompt) or copied_share(rationale, prompt) >= MAX_COPIED


def judge_output(task: Any, example: Example, raw: str, prompt: str) -> Verdict:
    """Apply the gold filter to one teacher output (``prompt``: what the teacher was asked)."""
    answer = task.extract(raw, example)
    if answer == INVALID:
        return Verdict(answer, None, UNPARSEABLE)
    if not task.is_correct(answer, example):
        return Verdict(answer, None, WRONG)
    spec = task.answer_spec(example)
    if any(not task.is_correct(a, example) for a in answer_statements(raw, spec)):
        return Verdict(answer, None, CONFLICTING)
    rationale = strip_answer_sentence(raw)
    while answer_statements(rationale, spec):  # all agree: keep the reasoning before the first one
        shorter = strip_answer_sentence(rationale)
        if shorter == rationale:
            return Verdict(answer, None, ANSWER_INSIDE)
        rationale = shorter
    if not rationale:
        return Verdict(answer, None, NO_RATIONALE)
    if restates(rationale, prompt):
        return Verdict(answer, None, RESTATES)
    return Verdict(answer, rationale, None)
