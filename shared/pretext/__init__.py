"""Pluggable pretext tasks: the protocol, the registry, and one module per task."""

from shared.pretext import cross_modal_contrastive as _cross_modal_contrastive  # registers
from shared.pretext.base import Batch, PretextTask, TaskContext, TaskRequirements, Views
from shared.pretext.registry import (
    available_pretexts,
    build_pretext,
    get_pretext_class,
    register_pretext,
)

__all__ = [
    "Batch",
    "PretextTask",
    "TaskContext",
    "TaskRequirements",
    "Views",
    "available_pretexts",
    "build_pretext",
    "get_pretext_class",
    "register_pretext",
]
del _cross_modal_contrastive
