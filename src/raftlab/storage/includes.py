"""YAML mappings with ``include`` files merged underneath (task and study configs)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``, merging nested mappings."""
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def merge_includes(cfg: dict[str, Any], base_dir: Path, *, resolve: Callable[[str, Path], Path] | None = None,
                   error: type[Exception] = ValueError, what: str = "config",
                   _stack: tuple[Path, ...] = ()) -> dict[str, Any]:
    """``cfg`` with its ``include`` files (a path or a list; ``resolve(name, base_dir)``, by default relative to
    ``base_dir``) deep-merged underneath it."""
    cfg = dict(cfg)
    includes = cfg.pop("include", None) or []
    merged: dict[str, Any] = {}
    for name in [includes] if isinstance(includes, str) else includes:
        path = resolve(name, base_dir) if resolve else Path(base_dir) / name
        merged = deep_merge(merged, read_yaml(path, resolve=resolve, error=error, what=what, _stack=_stack))
    return deep_merge(merged, cfg)


def read_yaml(path: str | Path, *, resolve: Callable[[str, Path], Path] | None = None,
              error: type[Exception] = ValueError, what: str = "config", _stack: tuple[Path, ...] = ()
              ) -> dict[str, Any]:
    """A YAML mapping with its ``include`` merged underneath (see :func:`merge_includes`); problems (missing file,
    invalid YAML, not a mapping, circular include) raise ``error`` naming the file."""
    import yaml

    path = Path(path).resolve()
    if path in _stack:
        raise error(f"{path}: circular include ({' -> '.join(p.name for p in (*_stack, path))})")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise error(f"{path}: no such {what} file") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not valid UTF-8 (byte {exc.start + 1})") from None
    except yaml.YAMLError as exc:
        from raftlab.corrupt import yaml_problem

        raise error(f"{path}: {yaml_problem(exc)}; fix the file") from None
    if not isinstance(raw, dict):
        raise error(f"{path}: a {what} must be a YAML mapping")
    return merge_includes(raw, path.parent, resolve=resolve, error=error, what=what, _stack=(*_stack, path))
