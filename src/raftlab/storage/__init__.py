"""The one place for raftlab's file and store mechanics (a leaf package: imports only :mod:`raftlab.corrupt`).

* :mod:`~raftlab.storage.jsonl`: :func:`iter_jsonl` / :func:`read_jsonl` read with errors that name file and line
  (bad JSON, bad UTF-8, a line over the size limit); :func:`write_jsonl` writes atomically; :class:`JsonlAppender`
  appends with an fsync per batch (crash-safe result logs).
* :mod:`~raftlab.storage.files`: :func:`atomic_write_text` (a unique temporary file beside the target, fsync,
  rename, fsync of the folder), :func:`write_json`; :func:`atomic_directory` builds a folder aside and swaps it in
  atomically.
* :mod:`~raftlab.storage.settings`: :func:`bind_settings` records a run's settings on first use, or refuses a
  later run with other settings (one exception type, :class:`SettingsMismatch`, for every resumable store).
* :mod:`~raftlab.storage.sqlite`: :class:`SqliteStore`, the shared set-up of raftlab's SQLite result stores (WAL,
  ``BEGIN IMMEDIATE`` transactions, one writer per store); :mod:`~raftlab.storage.locks`: :func:`acquire_lock`,
  the one-writer file lock (stores, run folders).
* :mod:`~raftlab.storage.includes`: :func:`read_yaml`, a YAML mapping with ``include`` files merged underneath
  (task and study configs).
"""

from raftlab.storage.files import atomic_directory, atomic_write_text, fsync_dir, write_json
from raftlab.storage.includes import deep_merge, merge_includes, read_yaml
from raftlab.storage.jsonl import (
    DEFAULT_MAX_LINE_BYTES,
    JsonlAppender,
    JsonlError,
    iter_jsonl,
    max_line_bytes,
    read_jsonl,
    write_jsonl,
)
from raftlab.storage.locks import InUse, acquire_lock
from raftlab.storage.settings import SettingsMismatch, bind_settings, bind_settings_file, settings_diff
from raftlab.storage.sqlite import SqliteStore, StoreCorrupt

__all__ = [
    "DEFAULT_MAX_LINE_BYTES", "InUse", "JsonlAppender", "JsonlError", "SettingsMismatch", "SqliteStore",
    "StoreCorrupt", "acquire_lock", "atomic_directory", "atomic_write_text", "bind_settings", "bind_settings_file",
    "deep_merge", "fsync_dir", "iter_jsonl", "max_line_bytes", "merge_includes", "read_jsonl", "read_yaml",
    "settings_diff", "write_json", "write_jsonl",
]
