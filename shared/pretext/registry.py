"""The explicit pretext-task registry: names are part of fedmm's interface."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.pretext.base import PretextTask, TaskContext
from shared.registry import Registry

_REGISTRY = Registry("pretext task")


def register_pretext(name: str) -> Callable[[type[Any]], type[Any]]:
    """Class decorator adding a task under ``name``; a duplicate name is refused."""
    return _REGISTRY.register(name)


def available_pretexts() -> list[str]:
    """Registered task names, sorted."""
    return _REGISTRY.names()


def get_pretext_class(name: str) -> type[Any]:
    """Look up a task class; an unknown name lists the available ones and the closest."""
    return _REGISTRY.get(name)


def build_pretext(cfg: Any, *, context: TaskContext) -> PretextTask:
    """Instantiate the task named by ``cfg.name`` with its own config model."""
    task: PretextTask = get_pretext_class(cfg.name)(cfg=cfg, context=context)
    return task
