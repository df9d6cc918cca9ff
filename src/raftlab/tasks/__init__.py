"""The 20 study tasks (+ synthetic tasks): registry, loaders, prompts, answer extraction, scoring.

>>> from raftlab.tasks import get_task
>>> task = get_task("sst-2")
>>> examples = task.load("test", limit=5)
>>> prompt = task.prompt(examples[0], mode="cot")
"""

from raftlab.storage import write_jsonl
from raftlab.tasks.answers import extract_answer
from raftlab.tasks.datadir import DataNotFoundError, resolve_data_dir
from raftlab.tasks.records import TaskDataError
from raftlab.tasks.registry import (
    all_tasks,
    generic_task,
    get_task,
    list_tasks,
    load_config,
    register_task,
    task_for,
)
from raftlab.tasks.config import TaskConfig
from raftlab.tasks.task import SPLITS, Task
from raftlab.tasks.validate import load_jsonl, validate_jsonl

__all__ = [
    "SPLITS",
    "DataNotFoundError",
    "Task",
    "TaskConfig",
    "TaskDataError",
    "all_tasks",
    "extract_answer",
    "generic_task",
    "get_task",
    "list_tasks",
    "load_config",
    "load_jsonl",
    "register_task",
    "resolve_data_dir",
    "task_for",
    "validate_jsonl",
    "write_jsonl",
]
