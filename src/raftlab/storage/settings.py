"""Binding a resumable result store to the settings it was made with: later runs with other settings are
refused (one exception type, :class:`SettingsMismatch`, for every store)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from raftlab.storage.files import write_json


class SettingsMismatch(ValueError):
    """A resumable result store (eval records, rationale store, ...) was made with other settings."""


def settings_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Top-level keys whose values differ."""
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def bind_settings(stored: dict[str, Any] | None, requested: dict[str, Any], *, where: str,
                  save: Callable[[dict[str, Any]], None], comparable: Callable[[dict], dict] = lambda s: s,
                  hint: str = "use another --out directory") -> None:
    """Bind a result store to its settings: save ``requested`` on first use, accept the same settings later,
    and raise :class:`SettingsMismatch` (naming ``where`` and the differing keys) otherwise.

    ``comparable`` maps settings to what must match (e.g. without the teacher's URL)."""
    if stored is None:
        save(requested)
        return
    old, new = comparable(stored), comparable(requested)
    diff = settings_diff(old, new)
    if diff:
        def short(value: Any) -> str:
            text = repr(value)
            return text if len(text) <= 60 else text[:57] + "..."

        details = ", ".join(f"{k}: stored {short(old.get(k))} vs requested {short(new.get(k))}" for k in diff)
        raise SettingsMismatch(f"{where} holds results made with other settings ({details}); {hint}")


def bind_settings_file(path: str | Path, settings: dict[str, Any], **kwargs: Any) -> None:
    """:func:`bind_settings` for settings kept in a JSON file (e.g. an eval directory's ``settings.json``)."""
    from raftlab.corrupt import read_json

    path = Path(path)
    stored = read_json(path, f"delete {path.parent} and run again, or use another --out") if path.exists() else None
    bind_settings(stored, settings, where=str(path.parent), save=lambda s: write_json(path, s), **kwargs)
