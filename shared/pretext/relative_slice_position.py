"""Relative slice position: regress where a slab lies along its stack (Zhang et al. 2024, docs/methods.md).

"Self-supervised learning for medical image data with anatomy-oriented imaging planes"
(Zhang, Wei, Zhu, Gu, Zheng; Medical Image Analysis 94:103151, 2024; arXiv 2403.16499).
For the parallel planes of a stack the paper regresses ``(s - s_min) / (s_max - s_min)``,
s the slice position along the plane normal, with a small head on the bottleneck and an
MSE loss (its public cardiac code: a Linear-ReLU-Linear head with a linear output).

Our reconstruction for co-registered 3D brain crops (not in the paper):

* The "stack" is the brain-cropped volume along one RAS axis (``cfg.axis``); its extent
  is ``[0, 1]``. A batch only holds a crop of it, so the target is computed from the
  crop's relative box (``crop_box``): a slab of ``t = cfg.slab_thickness`` voxels starting
  at crop index ``i`` of a crop of ``L`` voxels lies at
  ``box_start + (i + t / 2) / L * (box_end - box_start)`` -- its centre, in continuous
  voxel coordinates, as a fraction of the whole volume.
* A slab is moved so that the stack axis is the first spatial dim, ``(N, 1, t, X, Y)``
  with the other two axes in (D, H, W) order: the 3D encoder then sees 2D-like slabs in
  one consistent orientation, whatever the axis (``axis = "random"`` picks one per study).
* Each slab comes from a present modality drawn at random per slab; slabs with no
  foreground voxel in that modality are never drawn, and a study without any such slab
  is skipped.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from shared.config import RelativeSlicePositionConfig
from shared.model.encoder import MultiModalEncoder
from shared.pretext.base import Batch, TaskContext, TaskRequirements, Views
from shared.pretext.registry import register_pretext

#: Stack axis per plane name, as a spatial index into (D, H, W) of a RAS volume
#: (client/data/transforms.py reorients every study to RAS): D = left-right, H =
#: posterior-anterior, W = inferior-superior.
STACK_AXES: dict[str, int] = {"sagittal": 0, "coronal": 1, "axial": 2}


def slab_position(
    *, box_start: torch.Tensor | float, box_end: torch.Tensor | float, index: torch.Tensor | int,
    thickness: int, crop_len: int,
) -> torch.Tensor | float:
    """Relative position of a slab's centre along the whole (brain-cropped) volume.

    Args:
        box_start, box_end: the crop's relative start and end along the stack axis.
        index: the slab's first voxel within the crop.
        thickness: voxels per slab.
        crop_len: the crop's length along the stack axis (voxels).

    Returns:
        ``box_start + (index + thickness / 2) / crop_len * (box_end - box_start)``.
    """
    return box_start + (index + thickness / 2) / crop_len * (box_end - box_start)


def foreground_starts(stack: torch.Tensor, thickness: int) -> torch.Tensor:
    """Which slab starts hold foreground: ``(M, L, X, Y)`` -> bool ``(M, L - thickness + 1)``."""
    has_fg = stack.gt(0).flatten(2).any(dim=2).long()  # (M, L): slice has a nonzero voxel
    cum = F.pad(has_fg.cumsum(dim=1), (1, 0))
    return (cum[:, thickness:] - cum[:, :-thickness]) > 0


@register_pretext("relative_slice_position")
class RelativeSlicePositionTask:
    """Regress a slab's normalised position along its stack from the slab alone."""

    name: ClassVar[str]
    requirements: ClassVar[TaskRequirements] = TaskRequirements(
        min_modalities=1,
        notes="crop_box in the batch, RAS-oriented crops at least slab_thickness voxels deep "
        "along the stack axis with foreground in some slab",
    )

    def __init__(self, *, cfg: RelativeSlicePositionConfig, context: TaskContext) -> None:
        if cfg.slab_thickness > context.crop_size:
            raise ValueError(
                f"slab_thickness ({cfg.slab_thickness}) must not exceed the crop size "
                f"({context.crop_size}); lower relative_slice_position.slab_thickness."
            )
        self.cfg = cfg
        self.context = context

    def build_head(self, encoder: MultiModalEncoder) -> nn.Module:
        """Regression MLP on the pooled embedding: ``(N, encoder_dim) -> (N, 1)`` (linear output)."""
        encoder_dim = encoder.out_dim
        return nn.Sequential(
            nn.Linear(encoder_dim, encoder_dim),
            nn.ReLU(inplace=True),
            nn.Linear(encoder_dim, 1),
        )

    def make_views(self, batch: Batch, generator: torch.Generator) -> Views:
        """Sample ``slices_per_study`` foreground slabs per study and their positions.

        Returns views ``slabs (N, 1, t, X, Y)`` (stack axis first) and ``position (N,)``,
        N = ``slices_per_study`` x the studies with a present, non-empty modality (the
        others are counted as skipped).
        """
        image, present = batch["image"], batch["present"] > 0.5
        if "crop_box" not in batch:
            raise ValueError(
                f"relative_slice_position needs 'crop_box' in the batch, got keys {sorted(batch)}; "
                "build batches with client.data.transforms.build_crop_transforms."
            )
        box = batch["crop_box"]
        spatial = tuple(image.shape[2:])
        t = self.cfg.slab_thickness
        if self.cfg.axis == "random" and len(set(spatial)) != 1:
            raise ValueError(
                f"axis='random' needs cubic crops (slabs of every axis share one shape), got "
                f"{spatial}; pick a fixed axis or use cubic crops."
            )
        if t > min(spatial):
            raise ValueError(
                f"slab_thickness ({t}) must not exceed the crop edge, got crops of {spatial}."
            )
        slabs: list[torch.Tensor] = []
        positions: list[float] = []
        used = 0
        for b in range(image.shape[0]):
            # Draw the axis first and unconditionally, so a skipped study uses the same draws.
            if self.cfg.axis == "random":
                axis = int(torch.randint(3, (1,), generator=generator))
            else:
                axis = STACK_AXES[self.cfg.axis]
            mods = present[b].nonzero().flatten()
            if mods.numel() == 0:
                continue
            stack = image[b, mods].movedim(axis + 1, 1)  # (m, L, X, Y), stack axis first
            fg = foreground_starts(stack, t)  # (m, L - t + 1)
            starts = fg.any(dim=0).nonzero().flatten()
            if starts.numel() == 0:
                continue
            used += 1
            crop_len = stack.shape[1]
            # Distinct starts while there are enough, then repeat (tiny foreground only).
            order = torch.randperm(starts.numel(), generator=generator)
            picks = starts[order[torch.arange(self.cfg.slices_per_study) % starts.numel()]]
            for start in picks.tolist():
                candidates = fg[:, start].nonzero().flatten()
                m = int(candidates[torch.randint(candidates.numel(), (1,), generator=generator)])
                slabs.append(stack[m, start:start + t])
                positions.append(float(slab_position(
                    box_start=float(box[b, 0, axis]), box_end=float(box[b, 1, axis]),
                    index=start, thickness=t, crop_len=crop_len,
                )))
        skipped = image.shape[0] - used
        if not slabs:
            return Views({}, num_studies=0, skipped_studies=skipped)
        views = {
            "slabs": torch.stack(slabs).unsqueeze(1).float(),
            "position": torch.tensor(positions, dtype=torch.float32),
        }
        return Views(views, num_studies=used, skipped_studies=skipped)

    def loss(self, views: Views, *, encoder: MultiModalEncoder, head: nn.Module) -> torch.Tensor:
        """MSE between the predicted and the true relative positions."""
        pred = head(encoder(views.tensors["slabs"])).squeeze(-1)
        return F.mse_loss(pred.float(), views.tensors["position"])
