"""A name → object table with the errors every quant registry (schemes, compressors) wants."""

from __future__ import annotations

from typing import Generic, TypeVar

from .errors import QuantError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind  # e.g. "compressor", used in error messages
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        """Register `item`; a second one under the same name is a bug, so it raises."""
        if name in self._items:
            raise QuantError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise QuantError(f"unknown {self.kind} {name!r} (known: {', '.join(self.names())})") from None

    def names(self) -> list[str]:
        return sorted(self._items)
