"""Several pretext tasks trained together: one batch, each task's views, a weighted sum."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from shared.model.encoder import MultiModalEncoder
from shared.pretext.base import Batch, PretextTask, TaskContext, Views
from shared.pretext.registry import build_pretext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MixtureLoss:
    """One step's losses.

    Attributes:
        total: the weighted sum to back-propagate (None when no task had views).
        per_task: each task's unweighted loss value (tasks without views are absent).
        num_studies: studies that served at least one task.
        skipped: per task, the studies of the batch it could not use.
    """

    total: torch.Tensor | None
    per_task: dict[str, float]
    num_studies: int
    skipped: dict[str, int] = field(default_factory=dict)


class PretextMixture:
    """The run's pretext tasks with their site-local heads.

    Every task draws its views from the same batch, in config order, from one generator,
    so a step replays exactly for a seed. A task that cannot use a study (too few
    modalities, ...) skips it; the other tasks still train on it.
    """

    def __init__(self, tasks: Sequence[PretextTask], weights: Sequence[float],
                 heads: nn.ModuleDict) -> None:
        if not tasks or len(tasks) != len(weights):
            raise ValueError(f"expected one weight per task, got {len(tasks)} tasks and "
                             f"{len(weights)} weights")
        self.tasks = tuple(tasks)
        self.weights = tuple(float(w) for w in weights)
        self.heads = heads

    @classmethod
    def build(cls, configs: Sequence[Any], *, context: TaskContext, encoder: MultiModalEncoder,
              seed: int) -> PretextMixture:
        """Tasks from their configs; heads initialised from ``seed`` (the same on every site)."""
        tasks = [build_pretext(c, context=context) for c in configs]
        heads = nn.ModuleDict()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for task in tasks:
                heads[task.name] = task.build_head(encoder)
        return cls(tasks, [c.weight for c in configs], heads)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    def train(self, mode: bool = True) -> None:
        self.heads.train(mode)

    def step(self, batch: Batch, generator: torch.Generator, *, encoder: MultiModalEncoder,
             device: torch.device, autocast: Callable[[], Any]) -> MixtureLoss:
        """Views of every task from ``batch``, their losses and the weighted sum."""
        total: torch.Tensor | None = None
        per_task: dict[str, float] = {}
        skipped: dict[str, int] = {}
        served = 0
        for task, weight in zip(self.tasks, self.weights, strict=True):
            views: Views = task.make_views(batch, generator)
            if views.skipped_studies:
                skipped[task.name] = views.skipped_studies
            if views.empty:
                continue
            views = views.to(device)
            with autocast():
                loss = task.loss(views, encoder=encoder, head=self.heads[task.name])
            value = float(loss.detach())
            if not math.isfinite(value):
                log.warning("%s gave a non-finite loss (%s) on this batch; it is left out of "
                            "the step.", task.name, value)
                continue
            per_task[task.name] = value
            served = max(served, views.num_studies)
            total = loss * weight if total is None else total + loss * weight
        return MixtureLoss(total, per_task, served, skipped)

    def skip_warning(self, skipped: dict[str, int]) -> str | None:
        """One line naming each task that skipped studies, what it needs, and how many."""
        parts = [f"{task.name} skipped {skipped[task.name]} (it needs "
                 f"{task.requirements.describe()})"
                 for task in self.tasks if skipped.get(task.name)]
        if not parts:
            return None
        return ("Some studies of this round's batches cannot serve a pretext task: "
                + "; ".join(parts) + ". The other tasks still used them.")
