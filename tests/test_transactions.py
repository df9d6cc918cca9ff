"""Every result is one transaction: a fault at any statement boundary of any write, then a resume, ends with
exactly the results of a run without faults (0 lost, 0 duplicated); the same for eval records appended to JSONL.
One writer per store and run folder; atomic files and folders."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from raftlab.rationales import RationaleStore, generate_rationales
from raftlab.storage import InUse, SqliteStore, StoreCorrupt, acquire_lock, atomic_directory, atomic_write_text
from raftlab.tasks import get_task
from tests._rationale_helpers import AttemptTeacher, success_schedule

TASK = get_task("synth_arith")


class InjectedFault(sqlite3.OperationalError):
    pass


class FaultyConnection(sqlite3.Connection):
    """Counts every statement; the ``fail_at``-th one raises before it runs."""

    count = 0
    fail_at: int | None = None

    def _tick(self, sql: str) -> None:
        FaultyConnection.count += 1
        if FaultyConnection.count == FaultyConnection.fail_at:
            raise InjectedFault(f"injected fault at statement {FaultyConnection.count}: {sql[:40]}")

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        self._tick(sql)
        return super().execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        self._tick(sql)
        return super().executemany(sql, *args)

    def executescript(self, sql: str) -> sqlite3.Cursor:  # type: ignore[override]
        self._tick(sql)
        return super().executescript(sql)


def _generate(store: Path, examples: list, schedule: dict, fail_at: int | None = None, **kwargs: Any) -> bool:
    """One invocation; False when the injected fault stopped it."""
    FaultyConnection.count, FaultyConnection.fail_at = 0, fail_at
    try:
        generate_rationales(AttemptTeacher(examples, schedule), TASK, examples, store, max_retries=3,
                            concurrency=3, progress=False, **kwargs)
    except InjectedFault:
        return False
    except OSError as exc:  # a fault while opening the store comes back naming the store
        assert isinstance(exc.__cause__, InjectedFault), exc
        return False
    finally:
        FaultyConnection.fail_at = None
    return True


def _results(store: Path) -> dict[str, Any]:
    """What a run stored, without timestamps: attempts, kept rationales, final failures, examples, settings."""
    db = sqlite3.connect(store)
    try:
        return {
            "attempts": db.execute("SELECT example_id, attempt, answer, correct, error FROM attempts "
                                   "ORDER BY example_id, attempt").fetchall(),
            "kept": db.execute("SELECT example_id, attempt, rationale FROM rationales ORDER BY example_id").fetchall(),
            "failures": db.execute("SELECT example_id, attempts FROM failures ORDER BY example_id").fetchall(),
            "examples": db.execute("SELECT example_id, position FROM examples ORDER BY position").fetchall(),
            "settings": db.execute("SELECT value FROM meta WHERE key='settings'").fetchall(),
        }
    finally:
        db.close()


def test_a_fault_at_any_statement_then_resume_loses_and_duplicates_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(SqliteStore, "CONNECTION", FaultyConnection)
    examples = TASK.load("train", limit=6)
    schedule = success_schedule(examples, 3)
    assert _generate(tmp_path / "reference.sqlite", examples, schedule)
    reference, statements = _results(tmp_path / "reference.sqlite"), FaultyConnection.count
    assert reference["kept"] and reference["failures"]  # both kinds of result are exercised
    faulted = 0
    for k in range(1, statements + 1):  # every statement of every write, BEGIN and COMMIT included
        store = tmp_path / f"k{k}.sqlite"
        if _generate(store, examples, schedule, fail_at=k):
            continue  # statement k was a read that a retry-free path skipped
        faulted += 1
        assert _generate(store, examples, schedule), k  # resume
        assert _results(store) == reference, f"fault at statement {k}"
    assert faulted >= statements // 2


def test_a_fault_in_a_two_statement_write_leaves_neither(tmp_path, monkeypatch):
    """The attempt is written, then storing its kept rationale fails: neither stays."""
    monkeypatch.setattr(SqliteStore, "CONNECTION", FaultyConnection)
    db = RationaleStore(tmp_path / "r.sqlite")
    FaultyConnection.count, FaultyConnection.fail_at = 0, 3  # BEGIN, attempt, rationale <- fails
    with pytest.raises(InjectedFault):
        db.record_attempt("e1", 1, "h", "raw", "4", True, None, 0.1, 3, "rationale", False)
    FaultyConnection.fail_at = None
    assert db.count("attempts") == 0 and db.count("rationales") == 0
    db.record_attempt("e1", 1, "h", "raw", "4", True, None, 0.1, 3, "rationale", False)
    assert db.count("attempts") == 1 and db.kept_ids() == {"e1"}
    db.close()


def _store_state(path: Path) -> dict[str, Any]:
    db = sqlite3.connect(path)
    try:
        return {t: db.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()  # noqa: S608 - fixed names
                for t in ("meta", "attempts", "rationales", "failures")}
    finally:
        db.close()


@pytest.mark.parametrize("change", ["force_new_run", "raise_max_retries"])
def test_every_statement_of_a_settings_change_is_all_or_nothing(tmp_path, monkeypatch, change):
    """Discarding a store (--force-new-run) and raising max_retries each write several statements: a fault at any
    of them leaves the store exactly as before; a retry then gives exactly the state of a run without faults."""
    import shutil

    monkeypatch.setattr(SqliteStore, "CONNECTION", FaultyConnection)
    base = tmp_path / "base.sqlite"
    with RationaleStore(base) as db:
        db.bind_settings({"task": "a", "max_retries": 2})
        db.record_attempt("e1", 1, "h", "raw", "4", True, None, 0.1, 3, "rationale", False)
        db.record_attempt("e2", 1, "h", "raw", "5", False, None, 0.1, 3, None, False)
        db.record_attempt("e2", 2, "h", "raw", "5", False, None, 0.1, 3, None, True)
    settings, force = ({"task": "b", "max_retries": 2}, True) if change == "force_new_run" else \
        ({"task": "a", "max_retries": 3}, False)

    def apply(path: Path, fail_at: int | None) -> bool:
        with RationaleStore(path) as db:
            FaultyConnection.count, FaultyConnection.fail_at = 0, fail_at
            try:
                db.bind_settings(settings, force_new_run=force)
            except InjectedFault:
                return False
            finally:
                FaultyConnection.fail_at = None
        return True

    shutil.copy(base, tmp_path / "ref.sqlite")
    assert apply(tmp_path / "ref.sqlite", None)
    before, after, statements = _store_state(base), _store_state(tmp_path / "ref.sqlite"), FaultyConnection.count
    assert before != after and statements >= 3
    for k in range(1, statements + 1):
        path = tmp_path / f"k{k}.sqlite"
        shutil.copy(base, path)
        assert not apply(path, k), k
        assert _store_state(path) == before, f"fault at statement {k} left part of the change"
        assert apply(path, None) and _store_state(path) == after, k


def test_settings_clear_and_bind_are_one_transaction(tmp_path, monkeypatch):
    monkeypatch.setattr(SqliteStore, "CONNECTION", FaultyConnection)
    db = RationaleStore(tmp_path / "r.sqlite")
    db.bind_settings({"task": "a", "max_retries": 2})
    db.record_attempt("e1", 1, "h", "raw", "4", True, None, 0.1, 3, "rationale", False)
    FaultyConnection.count, FaultyConnection.fail_at = 0, 4  # force_new_run: fail inside the clearing
    with pytest.raises(InjectedFault):
        db.bind_settings({"task": "b", "max_retries": 2}, force_new_run=True)
    FaultyConnection.fail_at = None
    assert db.settings() == {"task": "a", "max_retries": 2} and db.kept_ids() == {"e1"}
    db.close()


# ----------------------------------------------------------------------------- eval records (JSONL appends)


class _FakeBackend:
    """Deterministic answers: question i is answered with the gold label when i is even."""

    name = "fake"

    def generate(self, prompts, params):
        from raftlab.backends.base import Generation

        out = []
        for p in prompts:
            ex = next(e for e in self.examples if e.question in p)
            label = ex.label if int(ex.id.split("-")[-1]) % 2 == 0 else "-1"
            out.append([Generation(text=f"So. The answer is {label}.", num_tokens=5)
                        for _ in range(params.n)])
        return out


def _eval(out: Path, examples: list, fail_batch: int | None, monkeypatch) -> bool:
    from raftlab import storage
    from raftlab.inference import evaluate

    real = storage.JsonlAppender.write_batch
    calls = {"n": 0}

    def torn_write(self, rows):  # the k-th batch: half its bytes reach the file, then the process "dies"
        calls["n"] += 1
        if calls["n"] == fail_batch:
            text = "".join(storage.jsonl._line(r) for r in rows)
            self._fh.write(text[: len(text) // 2])
            self._fh.flush()
            raise InjectedFault(f"torn write of batch {fail_batch}")
        real(self, rows)

    backend = _FakeBackend()
    backend.examples = examples
    monkeypatch.setattr(storage.JsonlAppender, "write_batch", torn_write)
    try:
        evaluate(backend, TASK, examples, mode="sc", k=2, temperature=0.8, max_new_tokens=16, seed=0,
                 batch_size=2, prompt_mode="cot", out_dir=out)
    except InjectedFault:
        return False
    finally:
        monkeypatch.setattr(storage.JsonlAppender, "write_batch", real)
    return True


def test_eval_records_survive_a_torn_append_at_every_batch(tmp_path, monkeypatch):
    from raftlab.analysis.records import read_records

    examples = TASK.load("test", limit=7)
    assert _eval(tmp_path / "ref", examples, None, monkeypatch)
    reference = read_records(tmp_path / "ref" / "records.jsonl")
    batches = -(-len(examples) // 2)
    for k in range(1, batches + 1):
        out = tmp_path / f"k{k}"
        assert not _eval(out, examples, k, monkeypatch)
        assert _eval(out, examples, None, monkeypatch)  # resume
        records = read_records(out / "records.jsonl")
        assert [r["id"] for r in records] == [r["id"] for r in reference], k  # none lost, none twice
        assert [r["samples"] for r in records] == [r["samples"] for r in reference], k


# ----------------------------------------------------------------------------- one writer


def _hold(path: str, ready, release) -> None:
    from raftlab.storage import acquire_lock as lock

    lock(path, "the test store")
    ready.set()
    release.wait(60)


def test_a_second_process_is_refused_with_the_holders_pid(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold, args=(str(tmp_path / "x.lock"), ready, release))
    proc.start()
    try:
        assert ready.wait(60)
        with pytest.raises(InUse, match=f"pid {proc.pid}"):
            acquire_lock(tmp_path / "x.lock", "the test store")
    finally:
        release.set()
        proc.join(60)
    release_it = acquire_lock(tmp_path / "x.lock", "the test store")  # free again once the holder is gone
    release_it()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    code = ("import os, sys; sys.path.insert(0, sys.argv[2]); from raftlab.storage import acquire_lock; "
            "acquire_lock(sys.argv[1], 'x'); print('held', flush=True); os.kill(os.getpid(), 9)")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.lock"), "src"], capture_output=True,
                          text=True, timeout=60, cwd=Path(__file__).resolve().parents[1])
    assert "held" in proc.stdout and proc.returncode == -9
    acquire_lock(tmp_path / "x.lock", "x")()


def test_two_stores_on_one_file_in_two_processes_are_refused(tmp_path):
    store = tmp_path / "r.sqlite"
    code = ("import sys; sys.path.insert(0, 'src'); from raftlab.rationales import RationaleStore; "
            f"RationaleStore({str(store)!r})")
    with RationaleStore(store):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                              cwd=Path(__file__).resolve().parents[1])
        assert proc.returncode != 0 and "in use by another raftlab process" in proc.stderr
        assert f"pid {os.getpid()}" in proc.stderr
        with RationaleStore(store) as again:  # this process may open it twice
            assert again.count("attempts") == 0


def test_a_second_study_in_one_run_folder_is_refused(tmp_path):
    from raftlab.study import StageRunner

    runner = StageRunner(tmp_path / "run")
    runner.lock()
    code = ("import sys; sys.path.insert(0, 'src'); from raftlab.study import StageRunner; "
            f"StageRunner({str(tmp_path / 'run')!r}).lock()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    runner.unlock()
    assert "run folder" in proc.stderr and f"pid {os.getpid()}" in proc.stderr


def test_a_damaged_store_is_named_with_what_to_do(tmp_path):
    store = tmp_path / "r.sqlite"
    with RationaleStore(store) as db:
        db.record_attempt("e1", 1, "h", "raw", "4", True, None, 0.1, 3, "rationale", False)
    data = bytearray(store.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)
    store.write_bytes(bytes(data))
    for suffix in ("-wal", "-shm"):
        Path(str(store) + suffix).unlink(missing_ok=True)
    with pytest.raises(StoreCorrupt, match=r"r\.sqlite.*move it aside"):
        RationaleStore(store)
    store.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreCorrupt, match=r"r\.sqlite"):
        RationaleStore(store)


# ----------------------------------------------------------------------------- atomic files and folders


def test_atomic_write_text_uses_a_unique_temporary_file(tmp_path):
    target = tmp_path / "f.json"
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            for _ in range(30):
                atomic_write_text(target, f"writer {i}\n" * 100)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    lines = set(target.read_text().splitlines())
    assert len(lines) == 1  # one writer's whole text, never a mix
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]  # no temporary file left


def test_atomic_write_text_leaves_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old")
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_atomic_directory_always_holds_a_complete_directory(tmp_path):
    target = tmp_path / "model"
    with atomic_directory(target) as tmp:
        (tmp / "a").write_text("1")
        (tmp / "b").write_text("1")
    stop, seen = threading.Event(), []

    def watch() -> None:  # each lookup resolves the path anew, as a reader opening files by path does
        while not stop.is_set():
            seen.append(((target / "a").is_file(), (target / "b").is_file()))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for i in range(200):
            with atomic_directory(target) as tmp:
                (tmp / "a").write_text(str(i))
                (tmp / "b").write_text(str(i))
    finally:
        stop.set()
        watcher.join(60)
    assert seen and set(seen) == {(True, True)}
    assert (target / "a").read_text() == "199"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_atomic_directory_keeps_the_old_one_when_the_block_fails(tmp_path):
    target = tmp_path / "model"
    with atomic_directory(target) as tmp:
        (tmp / "a").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / "a").write_text("new")
        raise RuntimeError("build failed")
    assert (target / "a").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_failed_nested_block_leaves_nothing_of_it(tmp_path):
    db = RationaleStore(tmp_path / "r.sqlite")
    with db.transaction():
        db.record_request_error("e1", 1, "outer")
        with pytest.raises(RuntimeError), db.transaction():
            db.record_request_error("e1", 2, "inner")
            raise RuntimeError("inner block fails")
    assert [r[0] for r in db.db.execute("SELECT error FROM request_errors")] == ["outer"]
    db.close()


def test_readers_need_no_writer_lock(tmp_path):
    from raftlab.rationales import run_stats

    store = tmp_path / "r.sqlite"
    code = ("import sys; sys.path.insert(0, 'src'); from raftlab.rationales import run_stats; "
            f"print(run_stats({str(store)!r})['attempts'])")
    with RationaleStore(store) as db:  # the writer holds it
        db.record_attempt("e1", 1, "h", "raw", "4", True, None, 0.1, 3, "rationale", False)
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                              cwd=Path(__file__).resolve().parents[1])
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "1"
    assert run_stats(store)["attempts"] == 1


def test_new_files_and_folders_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "f.json", "{}")
        with atomic_directory(tmp_path / "d") as tmp:
            (tmp / "x").write_text("1")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
