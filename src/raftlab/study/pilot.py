"""``raftlab study CONFIG --plan --pilot N``: N real teacher requests spread over the study's tasks, so that the
estimate uses the teacher's measured kept rate and rationale length instead of assumed ones. Nothing is written."""

from __future__ import annotations

from raftlab.rationales.pilot import PilotResult, run_pilot
from raftlab.study.config import StudyConfig


def pilot_examples(cfg: StudyConfig, n: int) -> list[tuple[object, list]]:
    """``(task, examples)`` pairs: ``n`` training examples in all, round-robin over the tasks, evenly spaced in
    each task's training subset (the one the data stage takes)."""
    from raftlab.tasks import get_task

    tasks = [(get_task(s.name), s) for s in cfg.tasks]
    share = [n // len(tasks) + (i < n % len(tasks)) for i in range(len(tasks))]
    out = []
    for (task, spec), k in zip(tasks, share):
        if not k:
            continue
        try:
            train = task.load("train", data_dir=spec.data_dir, limit=spec.train_limit, seed=cfg.seed)
        except (OSError, ValueError) as exc:
            raise ValueError(f"--pilot: no training data for task {spec.name!r} here ({exc})") from None
        step = max(1, len(train) // k)
        out.append((task, train[::step][:k]))
    return out


def pilot(cfg: StudyConfig, n: int) -> PilotResult:
    """Send ``n`` first attempts to the study's teacher (its prompts, sampling and gold filter)."""
    from raftlab.rationales import teacher_backend

    t = cfg.teacher
    if t.backend == "oracle":
        raise ValueError("--pilot needs a real teacher: the oracle teacher sends no requests")
    examples = pilot_examples(cfg, n)
    backend = teacher_backend(t.backend, t.backend_options, t.batch_size)
    return run_pilot(backend, examples, style=t.style, length=t.length, temperature=t.temperature,
                     max_new_tokens=t.max_new_tokens, seed=cfg.seed, batch_size=t.batch_size)
