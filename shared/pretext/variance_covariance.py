"""Variance-covariance regularisation of the encoder's deepest features (VICReg's two terms).

Not one of the four papers' methods: fedmm's answer to a failure measured on them. Each
pretext task we checked (all but relative_slice_position) collapses the encoder's deepest
features onto about two to four directions (participation ratio ~2 of 128 channels after
plane_intersection pretraining, ~6 at random initialisation;
``benchmarks/results/quality_linear_probe_plane_intersection_only.md``), and a frozen
pretrained encoder then serves segmentation *worse* than a frozen random one. Added to a
pretext task with a weight, this task keeps the features spread out (21-27 directions,
and the frozen federated encoder beats a frozen random one: ``quality_linear_probe.md``).

From VICReg (Bardes, Ponce, LeCun; ICLR 2022, arXiv 2105.04906) we take the variance and
covariance terms and leave out the invariance term (the pretext task it is combined with
gives the learning signal). For features ``z`` (n samples x C channels):

* variance ``v = mean_c max(0, gamma - sqrt(Var(z_c) + eps))`` with ``gamma = 1``;
* covariance ``c = sum_{i != j} Cov(z)_{ij}^2 / C``;
* loss ``variance_weight * v + covariance_weight * c`` (VICReg's 25 and 1).

Our choices (not in VICReg): the samples are the voxels of the deepest feature map of
every present modality's crop of the batch (one single-channel crop per modality, as the
encoder is trained), so a batch of 4 studies x 4 modalities of 32^3 crops gives 128
samples; each crop is flipped along each axis with probability 1/2 (the views' only
randomness). The task has no head: nothing of it leaves or stays on a site.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from shared.config import VarianceCovarianceConfig
from shared.model.encoder import MultiModalEncoder
from shared.pretext.base import Batch, TaskContext, TaskRequirements, Views
from shared.pretext.registry import register_pretext

#: Numerical floor under the variance in the hinge (VICReg's epsilon).
EPS = 1e-4


def variance_term(z: torch.Tensor, *, target_std: float) -> torch.Tensor:
    """``mean_c max(0, target_std - sqrt(Var(z_c) + EPS))`` for ``z (n, C)``."""
    std = torch.sqrt(z.var(dim=0) + EPS)
    return torch.relu(target_std - std).mean()


def covariance_term(z: torch.Tensor) -> torch.Tensor:
    """Sum of squared off-diagonal covariances over the channel count, for ``z (n, C)``."""
    centred = z - z.mean(dim=0, keepdim=True)
    cov = centred.T @ centred / (z.shape[0] - 1)
    off = cov - torch.diag(torch.diagonal(cov))
    return off.pow(2).sum() / z.shape[1]


@register_pretext("variance_covariance")
class VarianceCovarianceTask:
    """Keep the deepest features' channels varied and decorrelated across a batch's voxels."""

    name: ClassVar[str]
    requirements: ClassVar[TaskRequirements] = TaskRequirements(
        min_modalities=1, notes="a present, non-empty modality; a batch needs two such crops")

    def __init__(self, *, cfg: VarianceCovarianceConfig, context: TaskContext) -> None:
        self.cfg = cfg
        self.context = context

    def build_head(self, encoder: MultiModalEncoder) -> nn.Module:
        """No head: the loss reads the encoder's features directly."""
        return nn.Identity()

    def make_views(self, batch: Batch, generator: torch.Generator) -> Views:
        """Every present modality's crop as its own single-channel volume, randomly flipped.

        Returns the view ``crops (K, 1, D, H, W)``, K the present (study, modality) pairs;
        a study without any present, non-empty modality is skipped.
        """
        image, present = batch["image"], batch["present"] > 0.5
        crops: list[torch.Tensor] = []
        used = 0
        for b in range(image.shape[0]):
            mods = [m for m in range(image.shape[1]) if present[b, m] and image[b, m].gt(0).any()]
            used += bool(mods)
            for m in mods:
                flips = torch.rand(3, generator=generator) < 0.5
                dims = [d + 1 for d in range(3) if flips[d]]  # the crop is (1, D, H, W)
                crop = image[b, m][None]
                crops.append(crop.flip(dims) if dims else crop)
        if len(crops) < 2:  # a variance needs two samples: too little in this batch
            return Views({}, num_studies=0, skipped_studies=image.shape[0])
        skipped = image.shape[0] - used
        return Views({"crops": torch.stack(crops)}, num_studies=used, skipped_studies=skipped)

    def loss(self, views: Views, *, encoder: MultiModalEncoder, head: nn.Module) -> torch.Tensor:
        """``variance_weight * v + covariance_weight * c`` over the deepest map's voxels."""
        deepest = encoder.forward_features(views.tensors["crops"])[-1]     # (K, C, d, h, w)
        z = deepest.permute(0, 2, 3, 4, 1).reshape(-1, deepest.shape[1]).float()
        if z.shape[0] < 2:
            raise ValueError(f"expected at least 2 feature vectors for a variance, got {z.shape[0]} "
                             "(use larger crops or more studies per batch)")
        return (self.cfg.variance_weight * variance_term(z, target_std=self.cfg.target_std)
                + self.cfg.covariance_weight * covariance_term(z))
