"""Explicit, name-keyed registries (models, datasets, methods, task kinds).

One `register(...)` call sits next to each thing it registers; a duplicate name is an error
so two modules can never silently shadow each other.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from scalelab.errors import ScalelabError

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from a unique name to an entry, with helpful lookup errors."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"duplicate {self.kind} name {name!r}: already registered")
        self._entries[name] = entry
        return entry

    def replace(self, name: str, entry: T) -> T:
        """Swap the entry of a registered name (a method that gains a task-kind variant in
        another module). Raises ValueError for a name not registered yet."""
        if name not in self._entries:
            raise ValueError(f"no {self.kind} {name!r} to replace: register it first")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise ScalelabError(f"unknown {self.kind} {name!r} (known: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._entries.items())
