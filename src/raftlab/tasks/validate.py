"""Validate a user's JSONL file of :class:`Example` objects (the interchange format) with line/field errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from raftlab.schema import Example
from raftlab.storage import iter_jsonl
from raftlab.tasks.answers import canonical_number

REQUIRED = ("id", "task", "category", "question", "label")


@dataclass
class ValidationReport:
    """Examples that passed and human-readable errors ``"file:line: field 'x': problem"``."""

    path: Path
    examples: list[Example] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lines: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors and bool(self.examples)


def _check_example(ex: Example, task: Any | None) -> list[tuple[str, str]]:
    """(field, problem) pairs for semantic problems pydantic cannot see."""
    problems: list[tuple[str, str]] = []
    if not ex.question.strip():
        problems.append(("question", "is empty"))
    if ex.answer_type == "number":
        try:
            canonical_number(ex.label)
        except ValueError:
            problems.append(("label", f"{ex.label!r} is not a number (answer_type is 'number')"))
    else:
        if len(ex.option_letters) < 2:
            problems.append(("option_letters", "a choice example needs at least two option letters"))
        if len(set(ex.option_letters)) != len(ex.option_letters):
            problems.append(("option_letters", f"duplicate letters in {ex.option_letters}"))
        if ex.options and len(ex.options) != len(ex.option_letters):
            problems.append(("options", f"{len(ex.options)} option texts for {len(ex.option_letters)} letters"))
        if ex.label not in ex.option_letters:
            problems.append(("label", f"{ex.label!r} is not one of the options {ex.option_letters}"))
    if task is not None:
        if ex.answer_type != task.answer_type:
            problems.append(("answer_type", f"{ex.answer_type!r} but task {task.name!r} expects {task.answer_type!r}"))
        elif task.answer_type == "choice" and task.verbalizers and ex.option_letters != task.option_letters:
            problems.append(("option_letters", f"{ex.option_letters} but task {task.name!r} uses {task.option_letters}"))
        if ex.category != task.category:
            problems.append(("category", f"{ex.category!r} but task {task.name!r} is {task.category!r}"))
    return problems


def validate_jsonl(path: str | Path, task: Any | None = None, max_errors: int = 50) -> ValidationReport:
    """Read ``path`` line by line; collect every problem (up to ``max_errors``) instead of stopping at the first."""
    path = Path(path)
    report = ValidationReport(path=path)
    if not path.is_file():
        report.errors.append(f"{path}: file not found")
        return report
    seen_ids: dict[str, int] = {}
    for lineno, obj in iter_jsonl(path, errors=report.errors, max_errors=max_errors):
        report.lines = lineno
        if len(report.errors) >= max_errors:
            break
        where = f"{path}:{lineno}"
        if not isinstance(obj, dict):
            report.errors.append(f"{where}: expected a JSON object, got {type(obj).__name__}")
            continue
        missing = [f for f in REQUIRED if f not in obj]
        for f in missing:
            report.errors.append(f"{where}: field '{f}': missing")
        if missing:
            continue
        try:
            ex = Example.model_validate(obj)
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(x) for x in err["loc"]) or "<root>"
                report.errors.append(f"{where}: field '{loc}': {err['msg']}")
            continue
        problems = _check_example(ex, task)
        if ex.id in seen_ids:
            problems.append(("id", f"duplicate id {ex.id!r} (first on line {seen_ids[ex.id]})"))
        seen_ids.setdefault(ex.id, lineno)
        for f, msg in problems:
            report.errors.append(f"{where}: field '{f}': {msg}")
        if not problems:
            report.examples.append(ex)
    if len(report.errors) >= max_errors:
        report.errors.append(f"{path}: stopped after {max_errors} errors")
    if not report.examples and not report.errors:
        report.errors.append(f"{path}: no examples (empty file)")
    return report


def load_jsonl(path: str | Path, task: Any | None = None) -> list[Example]:
    """All Examples of a JSONL file; raises ``ValueError`` listing every bad line/field."""
    report = validate_jsonl(path, task)
    if report.errors:
        raise ValueError(f"{path}: {len(report.errors)} invalid line(s): " + "; ".join(report.errors)
                         + f"; fix those lines and check with `raftlab data validate {path}`")
    return report.examples
