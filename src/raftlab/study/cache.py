"""Cached, resumable stages in a run directory.

Every stage owns the folder ``RUN/<stage name>/`` and is recorded in ``RUN/manifest.json`` with its key (for a
study: :mod:`raftlab.study.inputs`, the config fields it reads plus the keys of the stages it depends on) and
those inputs. One process writes a run folder at a time (``RUN/.lock``, see :meth:`StageRunner.lock`). Rerunning a
finished stage with the same hash skips it; a stage interrupted half-way is re-entered (stages resume
their own partial work, e.g. the rationale store and the eval records); a finished stage whose hash
changed raises :class:`StageChangedError` unless ``on_change="rerun"``, which clears its folder and
runs it again (and, since hashes chain, every stage after it).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from raftlab import layout
from raftlab.machine import PeakRSS, release_memory
from raftlab.storage import acquire_lock, write_json
from raftlab.study.config import stable_hash

logger = logging.getLogger(__name__)
MANIFEST = layout.MANIFEST
LOCK_FILE = ".lock"
OnChange = Literal["error", "rerun"]
#: Runs a stage's work somewhere: ``(name, fn, folder) -> (outputs, seconds, peak RSS, growth of the peak)``.
Execute = Callable[[str, Callable[[Path], "dict[str, Any] | None"], Path], tuple[dict[str, Any], float, int, int]]


class StageChangedError(RuntimeError):
    """A finished stage would now run with different inputs."""


class ManifestCorrupt(ValueError):
    """A run's manifest that cannot be read (the message names it and what to do)."""


class StageFailed(RuntimeError):
    """A stage raised; the message names the stage and its folder (rerun to resume)."""


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class StageRunner:
    """Runs named stages at most once per input hash, recording them in ``RUN/manifest.json``."""

    def __init__(self, run_dir: str | Path, on_change: OnChange = "error") -> None:
        self.run_dir = Path(run_dir)
        self.on_change = on_change
        self.path = self.run_dir / MANIFEST
        self.stages: dict[str, dict[str, Any]] = self._load()
        self.executed: list[str] = []
        self.skipped: list[str] = []
        self.total: int | None = None  # planned stage count, for progress messages
        self.begun = 0  # stages begun (run, resumed or skipped): each one's number in the progress messages
        self._unlock: Callable[[], None] | None = None

    def _load(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            return {}
        try:
            return json.loads(self.path.read_text(encoding="utf-8")).get("stages", {})
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
            raise ManifestCorrupt(f"{self.path}: damaged manifest ({exc}); move the run folder aside (or delete "
                                  "the manifest to recompute every stage) and rerun") from None

    def lock(self) -> None:
        """Hold the run folder for this process (one writer per run folder; another gets
        :class:`raftlab.storage.InUse` naming this pid), then read the manifest as the last holder left it.
        Creates the folder."""
        if self._unlock is None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._unlock = acquire_lock(self.run_dir / LOCK_FILE, f"run folder {self.run_dir}")
            self.stages = self._load()

    def unlock(self) -> None:
        if self._unlock is not None:
            self._unlock()
            self._unlock = None

    def _progress(self) -> str:
        """The next stage's number, counted as stages begin (stages that run side by side get their own)."""
        self.begun += 1
        return f"({self.begun}/{self.total}) " if self.total else ""

    def _save(self) -> None:
        write_json(self.path, {"stages": self.stages})

    def stage_dir(self, name: str) -> Path:
        return self.run_dir / name

    def hash_of(self, name: str) -> str:
        return self.stages[name]["hash"]

    def is_done(self, name: str, inputs: dict[str, Any], deps: tuple[str, ...] = (), key: str | None = None) -> bool:
        rec = self.stages.get(name)
        return bool(rec and rec["status"] == "done" and rec["hash"] == (key or self._key(inputs, deps)))

    def _key(self, inputs: dict[str, Any], deps: tuple[str, ...]) -> str:
        """The key of a stage given without one (``run(name, inputs, fn)``): its inputs and its finished
        dependencies' keys (a study's stages come with keys, see :mod:`raftlab.study.inputs`)."""
        missing = [d for d in deps if self.stages.get(d, {}).get("status") != "done"]
        if missing:
            raise RuntimeError(f"stage dependencies not finished: {', '.join(missing)}")
        return stable_hash({"inputs": inputs, "deps": {d: self.stages[d]["hash"] for d in deps}})

    def status(self, name: str, key: str, inputs: dict[str, Any], dep_keys: dict[str, str]) -> dict[str, Any]:
        """What running the stage now would do, without doing it: ``done`` (reused), ``would run`` (never
        started), ``would resume`` (started with these inputs), or ``changed`` with the inputs and dependencies
        that differ from the recorded run."""
        rec = self.stages.get(name)
        if rec is None:
            return {"status": "would run"}
        if rec["hash"] == key:
            return {"status": "done" if rec["status"] == "done" else "would resume"}
        if "dep_keys" not in rec:
            return {"status": "changed", "changed_inputs": [], "changed_deps": [],
                    "reason": "recorded by an earlier raftlab, which keyed stages differently"}
        old_inputs, old_deps = rec.get("inputs") or {}, rec.get("dep_keys") or {}
        changed = sorted(p for p in set(old_inputs) | set(inputs) if old_inputs.get(p) != inputs.get(p))
        deps = sorted(d for d in set(old_deps) | set(dep_keys) if old_deps.get(d) != dep_keys.get(d))
        return {"status": "changed", "changed_inputs": changed, "changed_deps": deps,
                **({} if changed or deps else {"reason": "raftlab's code for this stage changed"})}

    def begin(self, name: str, inputs: dict[str, Any], deps: tuple[str, ...] | list[str] = (),
              key: str | None = None, dep_keys: dict[str, str] | None = None) -> tuple[bool, dict[str, Any] | Path]:
        """``(True, outputs)`` when the stage is already done with this key (it is skipped), else
        ``(False, folder)``: the stage is recorded as running and its folder exists (cleared first when its
        inputs changed and ``on_change="rerun"``)."""
        deps = tuple(deps)
        key = key or self._key(inputs, deps)
        folder = self.stage_dir(name)
        rec = self.stages.get(name)
        if rec is not None and rec["hash"] == key and rec["status"] == "done":
            self.skipped.append(name)
            logger.info(f"{self._progress()}[skip] {name} (done {rec.get('finished', '')})")
            return True, rec.get("outputs") or {}
        if rec is not None and rec["hash"] != key:
            if self.on_change == "error":
                what = self.status(name, key, inputs, dep_keys or {})
                because = ", ".join([*what.get("changed_inputs", []),
                                     *(f"stage {d}" for d in what.get("changed_deps", []))]) or what.get("reason")
                raise StageChangedError(
                    f"{self.path}: stage '{name}' was {'run' if rec['status'] == 'done' else 'started'} with "
                    f"different inputs (changed: {because}). Use a new run directory, or rerun with "
                    f"--rerun-changed to redo this stage and the ones after it (--plan shows them).")
            logger.info(f"[changed] {name}: clearing {folder}")
            shutil.rmtree(folder, ignore_errors=True)
        resumed = rec is not None and rec["hash"] == key
        logger.info(f"{self._progress()}[{'resume' if resumed else 'run'}] {name}")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        folder.mkdir(parents=True, exist_ok=True)
        self.stages[name] = {"hash": key, "status": "running", "started": _now(), "inputs": inputs,
                             "deps": list(deps), **({"dep_keys": dep_keys} if dep_keys is not None else {})}
        self._save()
        return False, folder

    def finish(self, name: str, outputs: dict[str, Any], seconds: float, peak_rss: int | None = None,
               rss_after: int | None = None, where: str | None = None) -> dict[str, Any]:
        """Record a stage that ran (``seconds`` of wall time, its peak memory, where it ran)."""
        record: dict[str, Any] = {"status": "done", "finished": _now(), "seconds": round(seconds, 3)}
        if peak_rss is not None:
            record["peak_rss_mb"] = round(peak_rss / 2**20)
        if rss_after is not None:
            record["rss_after_mb"] = round(rss_after / 2**20)
        if where:
            record["worker"] = where
        self.stages[name].update(**record, outputs=outputs)
        self._save()
        memory = f", peak memory {peak_rss / 2**30:.2f} GB" if peak_rss is not None else ""
        logger.info(f"      {name} done in {seconds:.1f}s{memory}" + (f" ({where})" if where else ""))
        self.executed.append(name)
        return outputs

    def run(self, name: str, inputs: dict[str, Any], fn: Callable[[Path], dict[str, Any] | None],
            deps: tuple[str, ...] | list[str] = (), execute: Execute | None = None, key: str | None = None,
            dep_keys: dict[str, str] | None = None) -> dict[str, Any]:
        """Run ``fn(stage_dir) -> outputs`` unless already done with the same inputs; return its outputs.
        ``execute`` runs it elsewhere (``(name, fn, folder) ->`` what :func:`run_stage_work` returns, e.g.
        :func:`raftlab.study.isolation.run_stage_in_child`); by default it runs in this process."""
        skipped, found = self.begin(name, inputs, deps, key, dep_keys)
        if skipped:
            return found  # type: ignore[return-value]
        if execute is not None:
            outputs, seconds, peak, _ = execute(name, fn, found)  # type: ignore[arg-type]
            return self.finish(name, outputs, seconds, peak, where=getattr(execute, "where", None))
        outputs, seconds, peak, grew = run_stage_work(name, fn, found)  # type: ignore[arg-type]
        # a stage that loaded a model hands its memory back to the OS before the next stage (a collection costs
        # a fraction of a second, so stages that did not grow the process skip it)
        after = release_memory() if grew > 64 * 2**20 else None
        return self.finish(name, outputs, seconds, peak, after)


def run_stage_work(name: str, fn: Callable[[Path], dict[str, Any] | None], folder: Path
                   ) -> tuple[dict[str, Any], float, int, int]:
    """``(outputs, seconds, peak RSS, growth of the peak over the start)`` of ``fn(folder)``; a failure becomes
    :class:`StageFailed`."""
    t0 = time.perf_counter()
    try:
        with PeakRSS() as memory:
            outputs = fn(folder) or {}
    except Exception as exc:
        raise StageFailed(f"stage '{name}' failed ({type(exc).__name__}: {exc}); its partial work is in "
                          f"{folder}. Fix the cause and rerun the same command to resume.") from exc
    return outputs, time.perf_counter() - t0, memory.peak, memory.peak - memory.start
