"""The PretextTask protocol, the views a task makes, and what a task needs from a study."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

import torch
from torch import nn

from shared.model.encoder import MultiModalEncoder
from shared.stats_schema import ModalityStats, StatsPool

Batch = Mapping[str, torch.Tensor]
"""A collated batch from a site: ``image (B, M, D, H, W)`` in [0, 1] with background 0,
``present (B, M)`` 0/1, ``fg_mean (B, M)``, ``fg_std (B, M)``, ``fg_hist (B, M, bins)``,
``crop_box (B, 2, 3)``: the crop's relative start and end per axis in its brain-cropped
volume (axis order D, H, W)."""


@dataclass(frozen=True)
class TaskRequirements:
    """What a study must offer for a task to use it."""

    min_modalities: int = 1
    #: Other needs, for people (e.g. "a 3D volume of at least 16 voxels per edge").
    notes: str = ""

    def describe(self) -> str:
        """One line for warnings: what a study must offer."""
        need = f">= {self.min_modalities} present modalities"
        return f"{need}; {self.notes}" if self.notes else need


@dataclass(frozen=True)
class TaskContext:
    """Site-side inputs a task may draw on besides the batch.

    Attributes:
        modalities: the run's modality names, in the batch's M order.
        pool: the server's anonymized statistics pool (None before round 0 finished).
        own_stats: this site's own (un-noised, never sent) per-modality statistics.
        server_round: the round being trained (warm-ups count rounds; 0 outside rounds).
        crop_size: edge of the batch's cubic crops.
    """

    modalities: tuple[str, ...]
    pool: StatsPool | None = None
    own_stats: Mapping[str, ModalityStats] = field(default_factory=dict)
    server_round: int = 0
    crop_size: int = 48


@dataclass(frozen=True)
class Views:
    """The inputs a task's loss consumes, sampled once in ``make_views``.

    Attributes:
        tensors: task-specific named tensors.
        num_studies: studies of the batch that produced views.
        skipped_studies: studies that could not serve the task (e.g. one modality only).
    """

    tensors: dict[str, torch.Tensor]
    num_studies: int
    skipped_studies: int = 0

    @property
    def empty(self) -> bool:
        return self.num_studies == 0

    def to(self, device: torch.device | str) -> Views:
        moved = {k: v.to(device, non_blocking=True) for k, v in self.tensors.items()}
        return Views(moved, self.num_studies, self.skipped_studies)


@runtime_checkable
class PretextTask(Protocol):
    """A self-supervised task: a site-local head, seeded views, a deterministic loss.

    All randomness lives in ``make_views`` (driven by the given generator) so views
    replay exactly from a seed; ``loss`` is a pure function of views and weights.
    """

    name: ClassVar[str]
    requirements: ClassVar[TaskRequirements]

    def build_head(self, encoder: MultiModalEncoder) -> nn.Module:
        """The task's head (projection, classifier or decoder); it stays on the site."""
        ...

    def make_views(self, batch: Batch, generator: torch.Generator) -> Views:
        """Sample the task's views from a batch (on CPU)."""
        ...

    def loss(self, views: Views, *, encoder: MultiModalEncoder, head: nn.Module) -> torch.Tensor:
        """Scalar loss of the views under the current weights."""
        ...
