"""Explicit name -> class registries (pretext tasks, dataset layouts, partitioners)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from shared.lookup import look_up

C = TypeVar("C", bound=type)


class Registry:
    """Classes registered under unique names; unknown names get a helpful error.

    Args:
        kind: what is registered, for messages ("pretext task", "dataset layout", ...).
        fix: a hint appended to the unknown-name error.
    """

    def __init__(self, kind: str, *, fix: str = "") -> None:
        self.kind = kind
        self.fix = fix
        self._items: dict[str, type[Any]] = {}

    def register(self, name: str) -> Callable[[C], C]:
        """Class decorator: add ``cls`` under ``name`` and set ``cls.name``.

        Raises:
            ValueError: the name is taken, or the class declares a different ``name``.
        """

        def add(cls: C) -> C:
            if name in self._items:
                raise ValueError(
                    f"{self.kind} {name!r} is already registered by "
                    f"{self._items[name].__qualname__}; pick another name for {cls.__qualname__}."
                )
            declared = cls.__dict__.get("name")
            if isinstance(declared, str) and declared != name:
                raise ValueError(
                    f"Expected {cls.__qualname__}.name == {name!r} (its registry name), got "
                    f"{declared!r}; set the class attribute `name = {name!r}`."
                )
            cls.name = name  # type: ignore[attr-defined]
            self._items[name] = cls
            return cls

        return add

    def get(self, name: str) -> type[Any]:
        """The class registered as ``name``; unknown names list the options and the closest."""
        return look_up(name, self._items, kind=self.kind, fix=self.fix)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
