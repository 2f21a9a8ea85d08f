"""A tiny name -> builder registry (models, losses, prepare sources).

Registries are filled at import time and never mutated afterwards. Names are lower-case with hyphens;
lookups accept underscores too. An unknown name raises ``SegkitError`` listing every valid name.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from segkit.errors import SegkitError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects (usually builder functions).

    Example:
        >>> MODELS: Registry[Callable] = Registry("model")
        >>> @MODELS.register("flexunet")
        ... def build_flexunet(**kw): ...
        >>> MODELS.get("flexunet") is build_flexunet
        True
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    @staticmethod
    def _norm(name: str) -> str:
        return name.strip().lower().replace("_", "-")

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            key = self._norm(name)
            if key in self._items:
                raise ValueError(f"{self.kind} '{key}' registered twice")
            self._items[key] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        key = self._norm(name)
        if key not in self._items:
            close = difflib.get_close_matches(key, list(self._items), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise SegkitError(
                f"unknown {self.kind} '{name}'",
                hint=f"{hint}valid {self.kind}s: {', '.join(sorted(self._items))}",
            )
        return self._items[key]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._norm(name) in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))
