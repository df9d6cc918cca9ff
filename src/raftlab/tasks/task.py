"""The :class:`Task`: a :class:`~raftlab.tasks.config.TaskConfig` with its prompts and answer scoring (loading
is in :mod:`raftlab.tasks.loaders`)."""

from __future__ import annotations

import string
from collections.abc import Sequence
from pathlib import Path

from raftlab.schema import INVALID, Example
from raftlab.tasks import loaders, prompts
from raftlab.tasks.answers import AnswerSpec, canonical_number, extract_answer, numbers_equal
from raftlab.tasks.config import SPLITS, TaskConfig

__all__ = ["SPLITS", "Task", "subsample"]
subsample = loaders.subsample


class Task(TaskConfig):
    """A study task: its config (what it is, where its data is), its prompts and its answer scoring."""

    # ------------------------------------------------------------------ options

    def answer_spec(self, example: Example | None = None) -> AnswerSpec:
        """What an answer may look like: the task's label set, or an example's own options with the task's
        synonyms for them (e.g. "contradictory" for CB's "contradiction")."""
        if example is None:
            letters = self.option_letters or list(string.ascii_uppercase[:5])
            return AnswerSpec(self.answer_type, letters, self.verbalizers)
        verbal = {letter: [text] for letter, text in zip(example.option_letters, example.options)}
        for letter, texts in self.verbalizers.items():
            if letter in verbal and verbal[letter] and texts and texts[0].lower() == verbal[letter][0].lower():
                verbal[letter] = verbal[letter] + list(texts[1:])
        return AnswerSpec(example.answer_type, example.option_letters, verbal)

    def label_text(self, letter: str) -> str:
        """Display text of an option letter (fixed-option tasks)."""
        return self.verbalizers[letter][0]

    def letter_of(self, text: str) -> str | None:
        """Option letter of a label text or synonym (fixed-option tasks), case-insensitive; None if unknown."""
        key = text.strip().lower()
        for letter, texts in self.verbalizers.items():
            if any(key == t.lower() for t in texts):
                return letter
        return None

    # ------------------------------------------------------------------ loading

    def load(self, split: str = "test", data_dir: str | Path | None = None, limit: int | None = None,
             seed: int = 0) -> list[Example]:
        """Examples of ``split`` ("train" or "test") from local files (or generated, for synthetic tasks).

        ``limit`` keeps a seeded random subset of that size (in original order).
        """
        return loaders.subsample(loaders.load_local(self, split, data_dir, seed), limit, seed)

    def load_hub(self, split: str = "test", limit: int | None = None, seed: int = 0) -> list[Example]:
        """Examples from the Hugging Face hub (the paper's sources), for online users."""
        return loaders.subsample(loaders.load_hub(self, split), limit, seed)

    # ------------------------------------------------------------------ prompting

    def instruction(self, style: str = "A") -> str:
        return self.instructions.get(style.upper()) or self.instructions["A"]

    def prompt(self, example: Example, mode: str = "cot") -> str:
        """THE evaluation prompt (plain text the model continues); training appends :meth:`target`."""
        return prompts.eval_prompt(self.instructions["A"], self.answer_type, example.question, mode)

    def few_shot_prompt(self, demonstrations: Sequence[Example], example: Example, mode: str = "cot") -> str:
        """In-context prompt: each demonstration's evaluation prompt and training target (with its rationale in
        ``"cot"`` mode, the label only in ``"direct"`` mode), then ``example``'s evaluation prompt."""
        parts = [self.prompt(d, mode) + self.target(d, d.rationale if mode == "cot" else None) for d in demonstrations]
        return "\n\n\n".join([*parts, self.prompt(example, mode)])

    def canonical_label(self, example: Example) -> str:
        if self.answer_type == "number":
            return canonical_number(example.label)
        return example.label

    def target(self, example: Example, rationale: str | None = None) -> str:
        """``" The answer is X."`` or ``" {rationale} The answer is X."``; a trailing answer sentence in
        the rationale is replaced by the canonical one."""
        return prompts.target_text(self.canonical_label(example), rationale)

    def teacher_prompt(self, example: Example, style: str = "A", length: int = 3) -> str:
        """Prompt asking a teacher LLM for a rationale ending in "The answer is X"."""
        return prompts.teacher_prompt(self.instructions, self.answer_type, example.question, style, length)

    # ------------------------------------------------------------------ scoring

    def extract(self, text: str, example: Example | None = None) -> str:
        """Canonical answer from model output (see :func:`raftlab.tasks.answers.extract_answer`)."""
        return extract_answer(text, self.answer_spec(example))

    def is_correct(self, pred: str, example: Example) -> bool:
        """Numeric tolerance 1e-4 for numbers; option letter or option text for choices."""
        if pred is None or pred == INVALID:
            return False
        pred = str(pred).strip()
        if self.answer_type == "number" or example.answer_type == "number":
            return numbers_equal(pred, example.label)
        if pred.upper() == example.label.upper() and len(pred) == 1:
            return True
        parsed = extract_answer(pred, self.answer_spec(example))
        return parsed != INVALID and parsed == example.label
