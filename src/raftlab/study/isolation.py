"""Run one stage of a study in a child process, so that each stage's memory is its own.

A process that has loaded, trained and sampled several models keeps memory after the last one is released
(allocator arenas, oneDNN's caches, imports), so that in one process a study's later stages peak above what any
of them needs alone. Each stage here runs in a process forked from a *fork server* that imported torch,
transformers and raftlab once (it never computes, so forking it is safe for OpenMP): a stage starts without a
fresh interpreter's imports, and its memory goes back to the OS when it ends.

The child gets this process's environment, working directory, logger levels and warning filters; its log
records come back over a pipe and go through this process's handlers (the terminal, pytest's caplog), so the
output reads as if the stage had run here. Progress bars write to the terminal directly. An error in the stage
comes back as :class:`~raftlab.study.cache.StageFailed` with the original exception as its cause; Ctrl-C stops
the child (which saves what it has, as a stage in this process would) and then this process; a child that dies
(killed, out of memory) is a :class:`StageFailed` naming its exit status.
"""

from __future__ import annotations

import functools
import logging
import logging.handlers
import multiprocessing
import os
import signal
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from raftlab.machine import ONCE_ENV
from raftlab.study.cache import StageFailed, run_stage_work

logger = logging.getLogger(__name__)

#: The modules of :mod:`raftlab.study.work` whose functions a stage's child process runs.
STAGE_MODULES = ("analysis", "data", "evaluate", "info_gain", "judge", "mean_of_task", "prompting", "rationales",
                 "reference", "report", "subset", "train")
#: Imported once by the fork server, so that stages do not pay for them.
PRELOAD = ("torch", "transformers", "peft", "raftlab.models", "raftlab.backends.hf", "raftlab.training",
           "raftlab.inference.evaluate", *(f"raftlab.study.work.{kind}" for kind in STAGE_MODULES))
#: After Ctrl-C: how long the child may take to save its work before it is stopped.
STOP_GRACE_S = 60.0


def _context() -> Any:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(PRELOAD))  # takes effect when the server starts (the first stage)
    return ctx


class _PipeHandler(logging.handlers.QueueHandler):
    """In the child: every log record to the parent, prepared as for a queue (message formatted with any
    traceback, arguments dropped: they may not pickle)."""

    def __init__(self, conn: Any) -> None:
        super().__init__(None)  # type: ignore[arg-type] - enqueue sends over the pipe instead
        self.conn = conn

    def enqueue(self, record: logging.LogRecord) -> None:
        self.conn.send(("log", record.__dict__))


def _logger_levels() -> dict[str, int]:
    levels = {"": logging.getLogger().level}
    for name, item in logging.root.manager.loggerDict.items():
        if isinstance(item, logging.Logger) and item.level != logging.NOTSET:
            levels[name] = item.level
    return levels


def _child(conn: Any, payload: bytes, env: dict[str, str], cwd: str, levels: dict[str, int],
           filters: list[Any]) -> None:
    """The child's main: the parent's settings, then ``task()`` (unpickled from ``payload``, raising
    :class:`StageFailed` for a stage's error); its result goes back over ``conn``."""
    import cloudpickle

    from raftlab.allocator import keep_freed_memory

    os.environ.clear()
    os.environ.update(env)
    # the parent stops a running stage with SIGINT (_stop); a study started as a background job inherits SIGINT
    # ignored, which would leave the stage no chance to save its partial work before it is killed
    signal.signal(signal.SIGINT, signal.default_int_handler)
    keep_freed_memory()  # faster training steps; the cost, a higher peak where the heap fragments (docs/training.md)
    os.chdir(cwd)
    warnings.filters[:] = filters
    root = logging.getLogger()
    root.handlers[:] = [_PipeHandler(conn)]
    for name, level in levels.items():
        logging.getLogger(name or None).setLevel(level)
    task = cloudpickle.loads(payload)
    try:
        result = task()
    except KeyboardInterrupt:
        conn.send(("interrupted", None))
        return
    except StageFailed as exc:
        conn.send(("failed", (str(exc), _portable(exc.__cause__))))
        return
    conn.send(("done", (result, os.environ.get(ONCE_ENV))))


def _start(task: Callable[[], Any], name: str, env: dict[str, str] | None = None) -> tuple[Any, Any]:
    """``(process, receiving end of its pipe)`` of a child of the fork server running ``task()``."""
    import cloudpickle

    ctx = _context()
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, name=f"raftlab stage {name}", daemon=False,
                        args=(send, cloudpickle.dumps(task), {**os.environ, **(env or {})}, os.getcwd(),
                              _logger_levels(), list(warnings.filters)))
    child.start()
    send.close()
    return child, receive


def _portable(exc: BaseException | None) -> bytes | None:
    """The exception, pickled, or a RuntimeError with its text where it does not pickle."""
    import cloudpickle

    if exc is None:
        return None
    try:
        data = cloudpickle.dumps(exc)
        cloudpickle.loads(data)
        return data
    except Exception:  # noqa: BLE001 - whatever the exception holds
        return cloudpickle.dumps(RuntimeError(f"{type(exc).__name__}: {exc}"))


def run_stage_in_child(name: str, fn: Callable[[Path], dict[str, Any] | None], folder: Path
                       ) -> tuple[dict[str, Any], float, int, int]:
    """:func:`~raftlab.study.cache.run_stage_work` of ``fn(folder)``, in a child process (see the module)."""
    child, receive = _start(functools.partial(run_stage_work, name, fn, Path(folder)), name)
    try:
        while True:
            message = _next_message(name, receive, child, folder)
            if message is not None:
                return _settle(*message)
    except BaseException:
        _stop(child)
        raise
    finally:
        receive.close()
        child.join(timeout=5)


run_stage_in_child.where = "child process"  # type: ignore[attr-defined] - recorded in the manifest


def _next_message(name: str, conn: Any, child: Any, folder: Path) -> tuple[str, Any] | None:
    """Wait for the child's next message: a log record is handled here (``None``), anything else returned."""
    try:
        kind, body = conn.recv()
    except EOFError:
        child.join(timeout=5)
        code = child.exitcode
        how = (f"was killed by signal {-code}" + (" (e.g. out of memory)" if code == -signal.SIGKILL else "")
               if code is not None and code < 0 else f"exited with status {code}")
        raise StageFailed(f"stage '{name}': its process {how}; its partial work is in {folder}. Rerun the "
                          "same command to resume.") from None
    if kind == "log":
        record = logging.makeLogRecord(body)
        logging.getLogger(record.name).handle(record)
        return None
    return kind, body


def _settle(kind: str, body: Any) -> Any:
    """The child's result, or its error raised here."""
    import cloudpickle

    if kind == "done":
        result, announced = body
        if announced:  # what the stage printed once is not printed again by the next
            os.environ[ONCE_ENV] = announced
        return result
    if kind == "interrupted":
        raise KeyboardInterrupt
    message, cause = body
    raise StageFailed(message) from (cloudpickle.loads(cause) if cause else None)


class ChildJob:
    """One stage running in a child of the fork server while this process schedules others (the job interface
    :func:`raftlab.study.executor.run_dispatched` uses: ``done``, ``result``, ``cancel``, ``job_id``, ``paths``).
    The child's log records are handled here whenever :meth:`done` is asked."""

    paths = None  # its log records go through this process's handlers: no log file of its own

    def __init__(self, name: str, task: Callable[[], Any], folder: Path, env: dict[str, str] | None = None):
        self.name, self.folder = name, Path(folder)
        self.child, self.conn = _start(task, name, env)
        self.job_id = str(self.child.pid)
        self.outcome: tuple[str, Any] | None = None

    def done(self) -> bool:
        if self.outcome is not None:
            return True
        try:
            while self.outcome is None and self.conn.poll():
                self.outcome = _next_message(self.name, self.conn, self.child, self.folder)
        except StageFailed as exc:
            self.outcome = ("failed", (str(exc), None))
        if self.outcome is not None:
            self.conn.close()
            self.child.join(timeout=5)
        return self.outcome is not None

    def result(self) -> Any:
        while not self.done():
            self.conn.poll(0.5)
        return _settle(*self.outcome)  # type: ignore[misc]

    def cancel(self, check: bool = False) -> None:
        if self.outcome is None:
            _stop(self.child)


class ForkExecutor:
    """Local workers as children of the fork server (submitit's executor interface: ``update_parameters``,
    ``submit``): a stage starts without importing torch again. ``env`` of the next submitted job is set with
    :meth:`update_parameters`."""

    def __init__(self) -> None:
        self.env: dict[str, str] = {}

    def update_parameters(self, env: dict[str, str] | None = None, **_: Any) -> None:
        self.env = dict(env or {})

    def submit(self, fn: Callable[..., Any], name: str, work: Any, given: dict[str, Any], folder: str,
               cores: tuple[int, ...] | None = None) -> ChildJob:
        """``fn(name, work, given, folder, cores)`` (:func:`raftlab.study.executor.stage_job`) in a child."""
        return ChildJob(name, functools.partial(fn, name, work, given, folder, cores), Path(folder), self.env)


def _stop(child: Any) -> None:
    """This process was interrupted (or failed) while the child runs: let the child stop and save its work
    (Ctrl-C reached it too), interrupt it if it did not, and kill it if it does not end."""
    child.join(timeout=2)
    if child.is_alive():
        os.kill(child.pid, signal.SIGINT)
        deadline = time.monotonic() + STOP_GRACE_S
        while child.is_alive() and time.monotonic() < deadline:
            child.join(timeout=0.5)
    if child.is_alive():
        logger.warning(f"the stage's process {child.pid} did not stop after Ctrl-C; killing it")
        child.kill()
        child.join(timeout=5)
