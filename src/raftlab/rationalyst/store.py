"""A small resumable SQLite store: one row per (stage, key), committed as each result arrives."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from raftlab.storage import SqliteStore, bind_settings


class StageStore(SqliteStore):
    """Results of the mine/filter/solve stages (and their settings) in one WAL SQLite file."""

    SCHEMA = ("CREATE TABLE IF NOT EXISTS results (stage TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
              " PRIMARY KEY (stage, key));")
    SYNCHRONOUS = "NORMAL"

    def has(self, stage: str, key: str) -> bool:
        return self.db.execute("SELECT 1 FROM results WHERE stage=? AND key=?", (stage, key)).fetchone() is not None

    def put(self, stage: str, key: str, value: Any) -> None:
        with self.transaction():  # one transaction per result
            self.db.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?)", (stage, key, json.dumps(value)))

    def items(self, stage: str) -> Iterator[tuple[str, Any]]:
        for key, value in self.db.execute("SELECT key, value FROM results WHERE stage=? ORDER BY rowid", (stage,)):
            yield key, json.loads(value)

    def count(self, stage: str) -> int:
        return self.db.execute("SELECT COUNT(*) FROM results WHERE stage=?", (stage,)).fetchone()[0]

    def check_settings(self, name: str, settings: dict[str, Any]) -> None:
        """Record ``settings`` under ``name`` on first use; raise :class:`~raftlab.storage.SettingsMismatch` if a
        later run asks for different ones."""
        bind_settings(dict(self.items("settings")).get(name), settings, where=f"{self.path} ({name!r})",
                      save=lambda s: self.put("settings", name, s),
                      hint="use another --out directory or the stored settings")
