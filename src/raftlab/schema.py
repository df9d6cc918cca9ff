"""The one example schema shared by every stage of the pipeline, and :class:`Strict`, the base of raftlab's typed
configs and records."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Category = Literal["math", "commonsense", "nlu", "synthetic"]
AnswerType = Literal["number", "choice"]

#: Value used for a model output from which no answer could be parsed.
INVALID = "[invalid]"


class Strict(BaseModel):
    """A pydantic model that rejects unknown fields: a misspelt key in a config or record is an error naming it,
    never a silently ignored setting."""

    model_config = ConfigDict(extra="forbid")


class Example(Strict):
    """One task instance.

    ``question`` is the question text with its options already rendered
    ("Options: (A) ... (B) ..."), so it can be dropped into any template.
    ``label`` is the gold answer: a canonical number string for math tasks,
    an option letter ("A", "B", ...) for choice tasks.
    """

    id: str
    task: str
    category: Category
    question: str
    label: str
    answer_type: AnswerType = "choice"
    option_letters: list[str] = Field(default_factory=list)
    options: list[str] = Field(default_factory=list, description="option texts, aligned with option_letters")
    rationale: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @property
    def source_id(self) -> str:
        """The id of the question this example was made from: its own, or for a copy sent to the teacher again
        (a later traversal of the data) the original's (``meta["source_id"]``)."""
        return str(self.meta.get("source_id", self.id))

    def label_text(self) -> str:
        """The gold answer in words (option text for choice tasks)."""
        if self.answer_type == "choice" and self.label in self.option_letters:
            return self.options[self.option_letters.index(self.label)]
        return self.label
