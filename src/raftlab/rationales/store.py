"""SQLite store of a rationale run: every attempt and every kept rationale, committed as it arrives.

WAL mode, one ``BEGIN IMMEDIATE`` transaction per result (an attempt and the kept rationale or final failure it
implies are stored together or not at all), unique (example, attempt) keys, one writer at a time: a run killed at
any moment (even ``kill -9``) resumes with no duplicate and no lost record.
"""

from __future__ import annotations

import json
import time
from typing import Any

from raftlab.schema import Example
from raftlab.storage import SettingsMismatch, SqliteStore, bind_settings

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT, started REAL NOT NULL, finished REAL, status TEXT NOT NULL,
    settings TEXT NOT NULL, target_n INTEGER, examples INTEGER, kept INTEGER, failed INTEGER, attempts INTEGER);
CREATE TABLE IF NOT EXISTS examples (
    example_id TEXT PRIMARY KEY, position INTEGER NOT NULL, example_json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS attempts (
    example_id TEXT NOT NULL, attempt INTEGER NOT NULL, prompt_hash TEXT NOT NULL, raw TEXT NOT NULL,
    answer TEXT, correct INTEGER NOT NULL, error TEXT, latency REAL, tokens INTEGER, created REAL NOT NULL,
    PRIMARY KEY (example_id, attempt));
CREATE TABLE IF NOT EXISTS rationales (
    example_id TEXT PRIMARY KEY, attempt INTEGER NOT NULL, rationale TEXT NOT NULL, raw TEXT NOT NULL,
    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS failures (
    example_id TEXT PRIMARY KEY, attempts INTEGER NOT NULL, last_error TEXT, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS request_errors (
    example_id TEXT NOT NULL, attempt INTEGER NOT NULL, error TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS judgments (
    example_id TEXT PRIMARY KEY, verdict TEXT NOT NULL, raw TEXT NOT NULL, judge TEXT NOT NULL,
    created REAL NOT NULL);
"""


TABLES = ("meta", "runs", "examples", "attempts", "rationales", "failures", "judgments", "request_errors")


def _comparable(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings that must match to resume: where the teacher is served (its URL) may change between runs, and
    ``max_retries`` may be raised (see :meth:`RationaleStore.bind_settings`)."""
    teacher = settings.get("teacher")
    if isinstance(teacher, dict):
        settings = {**settings, "teacher": {k: v for k, v in teacher.items() if k != "base_url"}}
    return {k: v for k, v in settings.items() if k != "max_retries"}


class RationaleStore(SqliteStore):
    """One rationale run's results; every write is its own transaction."""

    SCHEMA = SCHEMA

    # ------------------------------------------------------------- settings
    def settings(self) -> dict[str, Any] | None:
        row = self.db.execute("SELECT value FROM meta WHERE key='settings'").fetchone()
        return json.loads(row[0]) if row else None

    def bind_settings(self, settings: dict[str, Any], force_new_run: bool = False) -> None:
        """Record the run settings, or check them against the stored ones (:class:`SettingsMismatch`).

        ``max_retries`` may be raised on a rerun: examples that failed the gold filter with fewer attempts get the
        new budget. Lowering it is refused (their failures would not be comparable)."""
        with self.transaction():  # discarding, raising max_retries and binding: all or nothing
            self._bind_settings(settings, force_new_run)

    def _bind_settings(self, settings: dict[str, Any], force_new_run: bool) -> None:
        if force_new_run:
            self.clear()
        old = self.settings()
        if old is not None and _comparable(old) == _comparable(settings):
            before, now = old.get("max_retries"), settings.get("max_retries")
            if before is not None and now is not None and now < before:
                raise SettingsMismatch(f"{self.path} was made with max_retries {before}; lowering it to {now} is "
                                       "refused (raise it, use another --out, or --force-new-run to discard the "
                                       "store)")
            if before is not None and now is not None and now > before:
                with self.transaction():
                    self.db.execute("DELETE FROM failures WHERE attempts < ?", (now,))
                    self.db.execute("UPDATE meta SET value=? WHERE key='settings'",
                                    (json.dumps({**old, "max_retries": now}),))

        def save(value: dict[str, Any]) -> None:
            with self.transaction():
                self.db.execute("INSERT OR REPLACE INTO meta VALUES ('settings', ?)", (json.dumps(value),))

        bind_settings(self.settings(), settings, where=str(self.path), save=save, comparable=_comparable,
                      hint="use another --out, or --force-new-run to discard it")

    def clear(self) -> None:
        """Forget every result (the ``runs`` history stays)."""
        with self.transaction():
            for table in ("meta", "examples", "attempts", "rationales", "failures", "judgments", "request_errors"):
                self.db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names

    # ------------------------------------------------------------- runs
    def start_run(self, settings: dict[str, Any], target_n: int, examples: int) -> int:
        """Log one invocation (settings hold the teacher's description, never an API key)."""
        with self.transaction():
            cur = self.db.execute("INSERT INTO runs (started, status, settings, target_n, examples) "
                                  "VALUES (?, 'running', ?, ?, ?)", (time.time(), json.dumps(settings), target_n,
                                                                     examples))
        return int(cur.lastrowid)

    def finish_run(self, run_id: int, status: str) -> None:
        """Close an invocation's log row (a row left ``running`` was killed)."""
        with self.transaction():
            self.db.execute("UPDATE runs SET finished=?, status=?, kept=?, failed=?, attempts=? WHERE run_id=?",
                            (time.time(), status, self.count("rationales"), self.count("failures"),
                             self.count("attempts"), run_id))

    def runs(self) -> list[dict[str, Any]]:
        cols = ["run_id", "started", "finished", "status", "settings", "target_n", "examples", "kept", "failed",
                "attempts"]
        rows = [dict(zip(cols, r)) for r in self.db.execute(f"SELECT {', '.join(cols)} FROM runs ORDER BY run_id")]
        for r in rows:
            r["settings"] = json.loads(r["settings"])
        return rows

    def target(self) -> int | None:
        """The number of rationales the latest run was asked to keep (``n``; what its export holds at most)."""
        row = self.db.execute("SELECT target_n FROM runs ORDER BY run_id DESC LIMIT 1").fetchone()
        return row[0] if row else None

    # ------------------------------------------------------------- examples
    def add_examples(self, examples: list[Example]) -> None:
        with self.transaction():
            base = self.db.execute("SELECT COUNT(*) FROM examples").fetchone()[0]
            self.db.executemany("INSERT OR IGNORE INTO examples VALUES (?, ?, ?)",
                                [(e.id, base + i, e.model_dump_json()) for i, e in enumerate(examples)])

    def example(self, example_id: str) -> Example:
        row = self.db.execute("SELECT example_json FROM examples WHERE example_id=?", (example_id,)).fetchone()
        return Example.model_validate_json(row[0])

    # ------------------------------------------------------------- attempts
    def attempts_made(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT example_id, MAX(attempt) FROM attempts GROUP BY example_id"))

    def kept_ids(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT example_id FROM rationales")}

    def record_attempt(self, example_id: str, attempt: int, prompt_hash: str, raw: str, answer: str | None,
                       correct: bool, error: str | None, latency: float, tokens: int,
                       rationale: str | None, failed_for_good: bool) -> None:
        """One transaction: the attempt, and the kept rationale or the final failure it implies."""
        now = time.time()
        with self.transaction():
            cur = self.db.execute("INSERT OR IGNORE INTO attempts VALUES (?,?,?,?,?,?,?,?,?,?)",
                                  (example_id, attempt, prompt_hash, raw, answer, int(correct), error, latency,
                                   tokens, now))
            if cur.rowcount == 0:
                return  # already recorded (a resumed run redid it): keep the first
            if rationale is not None:
                self.db.execute("INSERT OR IGNORE INTO rationales VALUES (?,?,?,?,?)",
                                (example_id, attempt, rationale, raw, now))
            elif failed_for_good:
                self.db.execute("INSERT OR IGNORE INTO failures VALUES (?,?,?,?)", (example_id, attempt, error, now))

    def record_request_error(self, example_id: str, attempt: int, error: str) -> None:
        """A request that failed (connection, timeout, 429, 5xx, malformed response): not a gold-filter attempt."""
        with self.transaction():
            self.db.execute("INSERT INTO request_errors VALUES (?,?,?,?)", (example_id, attempt, error[:500],
                                                                          time.time()))

    def count(self, table: str) -> int:
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}")
        return self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # noqa: S608

    def kept(self, limit: int | None = None) -> list[tuple[Example, str, int]]:
        """(example, rationale, attempt) for every kept rationale, in data order; the first ``limit`` (the ones a
        run asked for and training gets: a local teacher's last call may keep a few more) when given."""
        rows = self.db.execute("SELECT e.example_json, r.rationale, r.attempt FROM rationales r JOIN examples e "
                               "USING (example_id) ORDER BY e.position LIMIT ?", (-1 if limit is None else limit,))
        return [(Example.model_validate_json(j), r, a) for j, r, a in rows]

    def attempt_rows(self) -> list[dict[str, Any]]:
        cols = ["example_id", "attempt", "prompt_hash", "raw", "answer", "correct", "error", "latency", "tokens",
                "created"]
        return [dict(zip(cols, r)) for r in self.db.execute(f"SELECT {', '.join(cols)} FROM attempts "
                                                             "ORDER BY example_id, attempt")]

    # ------------------------------------------------------------- judge
    def judged_ids(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT example_id FROM judgments")}

    def bind_judge(self, settings: dict[str, Any]) -> int:
        """Keep the stored verdicts only when they were made under ``settings`` (the judge and its budget); else
        forget them and record these settings (a study's judge stage reruns when its settings change, and must
        not count an earlier judge's verdicts). Returns how many verdicts were forgotten."""
        with self.transaction():
            row = self.db.execute("SELECT value FROM meta WHERE key='judge'").fetchone()
            if row is not None and json.loads(row[0]) == json.loads(json.dumps(settings)):
                return 0
            dropped = self.db.execute("DELETE FROM judgments").rowcount
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('judge', ?)", (json.dumps(settings),))
        return dropped

    def record_judgment(self, example_id: str, verdict: str, raw: str, judge: str) -> None:
        with self.transaction():
            self.db.execute("INSERT OR IGNORE INTO judgments VALUES (?,?,?,?,?)",
                            (example_id, verdict, raw, judge, time.time()))

    def judgments(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT example_id, verdict FROM judgments"))

