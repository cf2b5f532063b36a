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


@dataclass(frozen=True)
class StepViews:
    """Every task's views of one batch, made on the CPU before the step that uses them.

    Attributes:
        views: per task with views, in config order: the task, its weight and its views.
        skipped: per task, the studies of the batch it could not use.
    """

    views: tuple[tuple[PretextTask, float, Views], ...]
    skipped: dict[str, int]

    def pinned(self) -> StepViews:
        """The same views in page-locked memory, so their copy to a GPU can overlap compute."""
        return StepViews(tuple((t, w, Views({k: v.pin_memory() for k, v in views.tensors.items()},
                                            views.num_studies, views.skipped_studies))
                               for t, w, views in self.views), self.skipped)


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
        return self.losses(self.views(batch, generator), encoder=encoder, device=device,
                           autocast=autocast)

    def views(self, batch: Batch, generator: torch.Generator) -> StepViews:
        """Every task's views of ``batch`` (on the CPU; all randomness of a step is drawn here)."""
        made: list[tuple[PretextTask, float, Views]] = []
        skipped: dict[str, int] = {}
        for task, weight in zip(self.tasks, self.weights, strict=True):
            views: Views = task.make_views(batch, generator)
            if views.skipped_studies:
                skipped[task.name] = views.skipped_studies
            if not views.empty:
                made.append((task, weight, views))
        return StepViews(tuple(made), skipped)

    def losses(self, step: StepViews, *, encoder: MultiModalEncoder, device: torch.device,
               autocast: Callable[[], Any]) -> MixtureLoss:
        """Each task's loss on its views (moved to ``device``) and their weighted sum."""
        total: torch.Tensor | None = None
        per_task: dict[str, float] = {}
        served = 0
        for task, weight, views in step.views:
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
        return MixtureLoss(total, per_task, served, dict(step.skipped))

    def skip_warning(self, skipped: dict[str, int]) -> str | None:
        """One line naming each task that skipped studies, what it needs, and how many."""
        parts = [f"{task.name} skipped {skipped[task.name]} (it needs "
                 f"{task.requirements.describe()})"
                 for task in self.tasks if skipped.get(task.name)]
        if not parts:
            return None
        return ("Some studies of this round's batches cannot serve a pretext task: "
                + "; ".join(parts) + ". The other tasks still used them.")
