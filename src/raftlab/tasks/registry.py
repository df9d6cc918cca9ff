"""Task registry: YAML configs in ``tasks/configs/`` (with ``include``, as lm-evaluation-harness) plus
tasks registered from code with :func:`register_task`.

Files whose name starts with ``_`` are shared fragments meant to be included, not tasks.
Names are matched case-insensitively, ignoring ``-``, ``_`` and spaces ("SST-2" == "sst2").
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from raftlab.registry import Registry
from raftlab.storage import merge_includes
from raftlab.tasks.config import CONFIG_DIR, load_config
from raftlab.tasks.task import Task

_TASKS: Registry[Task] = Registry("task", normalize=lambda name: normalize_name(name))  # defined below
_LOADED = False
_LOCK = threading.RLock()


def normalize_name(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def _add(task: Task, replace: bool = False) -> Task:
    return _TASKS.add(task.name, task, aliases=task.aliases, replace=replace)


def _ensure_loaded() -> None:
    global _LOADED
    if _LOADED:
        return
    with _LOCK:
        if _LOADED:
            return
        for path in sorted(CONFIG_DIR.glob("*.yaml")):
            if not path.name.startswith("_"):
                _add(Task.from_config(load_config(path), path))
        _LOADED = True


def register_task(task: Task | str | Path | dict[str, Any] | Callable[[], Task] | None = None, *,
                  replace: bool = False) -> Any:
    """Register a task: a :class:`Task`, a YAML config path, a config dict (``include`` paths relative to the
    shipped configs), or (as a decorator) a factory returning a Task. Returns the registered Task (or the
    decorated factory unchanged). A name or alias another task holds is an error unless ``replace=True``."""
    _ensure_loaded()
    if task is None:  # @register_task(replace=True)
        return lambda fn: register_task(fn, replace=replace)
    if isinstance(task, Task):
        return _add(task, replace)
    if isinstance(task, (str, Path)):
        return _add(Task.from_config(load_config(task), Path(task)), replace)
    if isinstance(task, dict):
        return _add(Task.from_config(merge_includes(task, CONFIG_DIR, what="task config")), replace)
    if callable(task):
        made = task()
        if not isinstance(made, Task):
            raise TypeError(f"{task!r} must return a Task, got {type(made).__name__}")
        _add(made, replace)
        return task
    raise TypeError(f"cannot register {type(task).__name__}")


def get_task(name: str) -> Task:
    """The task called ``name`` (case-insensitive; aliases such as "sst-2", "arc-easy", "cb")."""
    _ensure_loaded()
    if name not in _TASKS:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(list_tasks())}")
    return _TASKS.get(name)


#: The paper's task order (tables/figures); other tasks follow alphabetically.
PAPER_ORDER = [
    "multiarith", "asdiv", "svamp", "gsm8k", "arc_easy", "arc_challenge", "commonsenseqa", "creak", "cr", "sst2",
    "trec", "agnews", "paws", "qqp", "cb", "anli", "wic", "winogrande", "subj", "coinflip",
]


def _order_key(task: Task) -> tuple[int, str]:
    key = normalize_name(task.name)
    order = [normalize_name(n) for n in PAPER_ORDER]
    return (order.index(key) if key in order else len(order), key)


def all_tasks(category: str | None = None) -> list[Task]:
    """Registered tasks (optionally of one category): the paper's 20 in paper order, then the rest."""
    _ensure_loaded()
    tasks = [t for t in _TASKS.values() if category is None or t.category == category]
    return sorted(tasks, key=_order_key)


def list_tasks(category: str | None = None) -> list[str]:
    """Registered task names (optionally of one category), the paper's 20 first in paper order."""
    return [t.name for t in all_tasks(category)]


GENERIC_INSTRUCTIONS = {
    "number": {"A": "Solve the following math problems.",
               "B": "Solve the problem below, working out each quantity you need.",
               "C": "Solve a problem and give its numeric answer."},
    "choice": {"A": "Following is a question and its answer options. Select the most possible one.",
               "B": "Answer the question below by choosing the best of the given options.",
               "C": "Pick the correct option for a question."},
}


def generic_task(name: str, answer_type: str = "choice", category: str = "nlu",
                 instruction: str | None = None) -> Task:
    """An unregistered task for user data (a JSONL of Examples): generic instructions, options per example."""
    instructions = dict(GENERIC_INSTRUCTIONS[answer_type])
    if instruction:
        instructions["A"] = instruction
    return Task(name=name, category=category, answer_type=answer_type, instructions=instructions,
                group="user data",
                description="user-provided examples")


def task_for(example: Any) -> Task:
    """The registered task of an Example (by its ``task`` field), else a :func:`generic_task` matching it."""
    try:
        return get_task(example.task)
    except KeyError:
        return generic_task(example.task, example.answer_type, example.category)
