"""How the ``raftlab`` command words an error: one line, ``error: ...`` (see :class:`raftlab.cli.main._Commands`)."""

from __future__ import annotations

import sqlite3

#: A user's error (bad value, unknown name, missing or damaged file, a settings clash, a damaged or locked SQLite
#: store): exit code 2; anything else is a bug or an environment problem (exit code 1).
USER_ERRORS = (ValueError, KeyError, OSError, sqlite3.DatabaseError)


def message(exc: BaseException) -> str:
    """``exc``'s message in one line (a YAML or validation error spans several; PyYAML's caret lines are
    dropped); a bare SQLite error, which names no file, gets a hint."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip(" ^")]
    out = ""
    for line in lines:
        out += line if not out else (" " if out.endswith(":") else "; ") + line
    out = out.rstrip(":") or type(exc).__name__
    if isinstance(exc, sqlite3.DatabaseError):
        out = f"SQLite: {out} (a store (*.sqlite) is damaged or in use; rerun with --debug to see which)"
    return out


def error_line(exc: BaseException) -> str:
    return f"error: {message(exc)}"
