"""Name -> factory registries for every pluggable piece (losses, optimizers, schedules, data sources)."""

from __future__ import annotations

from collections.abc import Callable
from difflib import get_close_matches
from typing import Generic, TypeVar

from .errors import ConfigError

__all__ = ["Registry", "did_you_mean"]

T = TypeVar("T")


def did_you_mean(name: str, valid: list[str]) -> str:
    """' (did you mean 'x'?)' when a near name exists, else ''."""
    near = get_close_matches(str(name), valid, n=1, cutoff=0.6)
    return f" (did you mean '{near[0]}'?)" if near else ""


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            return obj

        return deco

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} '{name}'{did_you_mean(name, self.names())}; "
                f"valid: {', '.join(self.names())}"
            ) from None
