"""The explicit pretext-task registry: names are part of fedmm's interface."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.lookup import look_up
from shared.pretext.base import PretextTask, TaskContext

_REGISTRY: dict[str, type[Any]] = {}


def register_pretext(name: str) -> Callable[[type[Any]], type[Any]]:
    """Class decorator adding a task under ``name``; a duplicate name is refused."""

    def add(cls: type[Any]) -> type[Any]:
        if name in _REGISTRY:
            raise ValueError(
                f"pretext task {name!r} is already registered by {_REGISTRY[name].__qualname__}; "
                "pick another name."
            )
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return add


def available_pretexts() -> list[str]:
    """Registered task names, sorted."""
    return sorted(_REGISTRY)


def get_pretext_class(name: str) -> type[Any]:
    """Look up a task class; an unknown name lists the available ones and the closest."""
    return look_up(name, _REGISTRY, kind="pretext task")


def build_pretext(cfg: Any, *, context: TaskContext) -> PretextTask:
    """Instantiate the task named by ``cfg.name`` with its own config model."""
    task: PretextTask = get_pretext_class(cfg.name)(cfg=cfg, context=context)
    return task
