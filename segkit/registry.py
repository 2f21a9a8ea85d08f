"""A tiny name -> builder registry (models, losses, prepare sources).

Registries are filled at import time and never mutated afterwards. Names are lower-case with hyphens;
lookups accept underscores too, and an alias (``unet`` for ``flexunet``) stands for the name it points to. An
unknown name raises ``SegkitError`` listing every valid name.
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
        self._aliases: dict[str, str] = {}

    @staticmethod
    def _norm(name: str) -> str:
        return name.strip().lower().replace("_", "-")

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            key = self._norm(name)
            if key in self._items or key in self._aliases:
                raise ValueError(f"{self.kind} '{key}' registered twice")
            self._items[key] = obj
            return obj

        return deco

    def alias(self, name: str, target: str) -> None:
        """Let ``name`` stand for the registered ``target`` (not listed by ``names``)."""
        key, to = self._norm(name), self._norm(target)
        if key in self._items or key in self._aliases:
            raise ValueError(f"{self.kind} '{key}' registered twice")
        if to not in self._items:
            raise ValueError(f"alias '{key}' of an unregistered {self.kind} '{to}'")
        self._aliases[key] = to

    def canonical(self, name: str) -> str:
        """The registered name ``name`` means (normalised; an alias resolved).

        Raises:
            SegkitError: unknown name (the hint names the closest one and lists every valid name).
        """
        key = self._norm(name)
        key = self._aliases.get(key, key)
        if key not in self._items:
            close = difflib.get_close_matches(key, list(self._items), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise SegkitError(
                f"unknown {self.kind} '{name}'",
                hint=f"{hint}valid {self.kind}{'es' if self.kind.endswith('s') else 's'}: "
                f"{', '.join(sorted(self._items))}",
            )
        return key

    def get(self, name: str) -> T:
        """The object registered as ``name`` (see ``canonical`` for the lookup and its error)."""
        return self._items[self.canonical(name)]

    def names(self) -> list[str]:
        """The registered names, sorted (aliases left out)."""
        return sorted(self._items)

    def aliases(self) -> dict[str, str]:
        """Alias -> registered name."""
        return dict(self._aliases)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = self._norm(name)
        return key in self._items or key in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))
