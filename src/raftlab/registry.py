"""One generic registry (a leaf module): named objects with aliases, name normalisation, and no silent overwrite.

Used for tasks, dataset readers, record converters, text cleaners and synthetic generators.

>>> GENERATORS = Registry("generator")
>>> @GENERATORS.register("coinflip")
... def generate_coinflip(n): ...
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """``name -> object``. Registering a name (or alias) that another object holds raises ``ValueError`` unless
    ``replace=True``; looking up an unknown name raises ``KeyError`` listing the known names."""

    def __init__(self, kind: str, normalize: Callable[[str], str] = str) -> None:
        self.kind = kind
        self._normalize = normalize
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}  # normalised name or alias -> key of _items
        self._lock = threading.RLock()

    def add(self, name: str, obj: T, *, aliases: tuple[str, ...] | list[str] = (), replace: bool = False) -> T:
        """Register ``obj`` under ``name`` (and ``aliases``); returns ``obj``."""
        with self._lock:
            key = self._normalize(name)
            keys = [key, *(self._normalize(a) for a in aliases)]
            for k in keys:
                owner = self._aliases.get(k)
                if owner is not None and not replace and (owner != key or self._items[owner] is not obj):
                    raise ValueError(f"{self.kind} name {k!r} of {name!r} is already registered (to {owner!r}); "
                                     "pass replace=True to override")
            self._items[key] = obj
            for k in keys:
                self._aliases[k] = key
            return obj

    def register(self, name: str, *, aliases: tuple[str, ...] = (), replace: bool = False) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""
        return lambda obj: self.add(name, obj, aliases=aliases, replace=replace)

    def key(self, name: str) -> str | None:
        """The registered key of ``name`` or one of its aliases (None if unknown)."""
        return self._aliases.get(self._normalize(name))

    def get(self, name: str) -> T:
        key = self.key(name)
        if key is None:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self._items)) or 'none'}")
        return self._items[key]

    __getitem__ = get

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.key(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def values(self) -> list[T]:
        return list(self._items.values())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} entries)"


__all__ = ["Registry"]
