"""Masked modality reconstruction with modality templates (BrainMVP, docs/methods.md).

Rui, Chen, Tang, Wang, Liu, Zhang, Wang. "BrainMVP: Multi-modal Vision Pre-training for
Brain Image Analysis using Multi-parametric MRI", CVPR 2025 (arXiv 2410.10604).

For each study one present modality is the target. Its crop is cut into cubic blocks
(``block_size``, 8 voxels) and ``mask_ratio`` (0.8) of them are masked twice, with two
independent masks:

* view 1 fills its masked blocks from a learnable **template** of that modality;
* view 2 fills them from **another modality of the same study** at the same place (from
  round ``cross_modal_from_round`` on, the warm-up; before that, and for a study with one
  modality, from the template as well).

A decoder reconstructs the original modality from each view (MSE), and a
**modality-aware contrastive** loss (symmetric InfoNCE, temperature 1.0) pulls together
the deepest features of the two views of one study (from round
``contrastive_from_round``). The total is BrainMVP's
``10 * rec(view 1) + rec(view 2) + contrastive``.

Our reconstruction (each is a config option or stated in docs/methods.md):
* templates span the whole brain-cropped volume at ``template_size`` voxels per edge and
  a crop reads its window by trilinear resampling through the batch's ``crop_box``
  (BrainMVP keeps 240x240x155 templates in the 1 mm atlas grid);
* the reconstruction MSE is taken over the masked blocks, as in masked auto-encoders;
* the contrastive loss uses a projection MLP on the pooled deepest features;
* warm-ups count federated rounds.
The templates are part of the site-local head: a learnt template converges towards an
average image of the site's patients, which must not leave the site. ``share_templates``
(off by default; each site must consent in its own settings too) aggregates them across
sites like the encoder (shared/pretext/shared_heads.py).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from shared.config import MaskedModalityReconstructionConfig
from shared.losses.info_nce import info_nce
from shared.model.encoder import MultiModalEncoder
from shared.model.pretext_decoder import PyramidDecoder
from shared.pretext.base import Batch, TaskContext, TaskRequirements, Views
from shared.pretext.registry import register_pretext

#: Initial template intensity: the middle of the [0, 1] model-input range.
_TEMPLATE_INIT = 0.5


class TemplateHead(nn.Module):
    """The site-local parts: modality templates, reconstruction decoder, projection."""

    def __init__(self, encoder: MultiModalEncoder, *, num_modalities: int, template_size: int,
                 projection_dim: int = 64) -> None:
        super().__init__()
        size = (template_size,) * 3
        self.templates = nn.Parameter(torch.full((num_modalities, 1, *size), _TEMPLATE_INIT))
        self.decoder = PyramidDecoder(encoder, out_channels=1)
        dim = encoder.out_dim
        self.projection = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True),
                                        nn.Linear(dim, projection_dim))

    def template_windows(self, modality: torch.Tensor, box: torch.Tensor,
                         size: tuple[int, int, int]) -> torch.Tensor:
        """Each study's crop window of its modality's template: ``(N, 1, *size)``."""
        grid = crop_grid(box, size).to(self.templates.dtype)
        return F.grid_sample(self.templates[modality], grid, mode="bilinear",
                             padding_mode="border", align_corners=False)


def crop_grid(box: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
    """``grid_sample`` coordinates of a crop's voxel centres inside the whole volume.

    Args:
        box: ``(N, 2, 3)`` relative start and end of each crop per axis (D, H, W).
        size: the crop's voxel shape (D, H, W).

    Returns:
        ``(N, D, H, W, 3)`` in [-1, 1], last axis ordered (W, H, D) as grid_sample wants.
    """
    axes = []
    for a, n in enumerate(size):
        centres = (torch.arange(n, dtype=torch.float32, device=box.device) + 0.5) / n
        start, end = box[:, 0, a:a + 1], box[:, 1, a:a + 1]          # (N, 1)
        axes.append(2 * (start + centres * (end - start)) - 1)       # (N, n)
    d, h, w = axes
    n = box.shape[0]
    gd = d[:, :, None, None].expand(n, *size)
    gh = h[:, None, :, None].expand(n, *size)
    gw = w[:, None, None, :].expand(n, *size)
    return torch.stack([gw, gh, gd], dim=-1)


def block_mask(n: int, size: tuple[int, int, int], *, block: int, ratio: float,
               generator: torch.Generator) -> torch.Tensor:
    """``(n, 1, *size)`` float masks: 1 on ``round(ratio * blocks)`` random blocks per study.

    Blocks tile the crop from its origin; a crop edge that is not a multiple of ``block``
    gets a smaller last block.
    """
    grid = tuple(-(-s // block) for s in size)
    total = grid[0] * grid[1] * grid[2]
    k = max(1, min(total - 1, round(ratio * total))) if total > 1 else 1
    scores = torch.rand(n, total, generator=generator)
    chosen = scores.argsort(dim=1)[:, :k]
    coarse = torch.zeros(n, total)
    coarse.scatter_(1, chosen, 1.0)
    coarse = coarse.view(n, 1, *grid)
    full = coarse.repeat_interleave(block, 2).repeat_interleave(block, 3).repeat_interleave(block, 4)
    return full[:, :, : size[0], : size[1], : size[2]].contiguous()


@register_pretext("masked_modality_reconstruction")
class MaskedModalityReconstructionTask:
    """BrainMVP's cross-modal masked reconstruction with templates + modality-aware InfoNCE."""

    name: ClassVar[str]
    requirements: ClassVar[TaskRequirements] = TaskRequirements(
        min_modalities=1,
        notes="view 2 fills from a second modality when the study has one, else from the template",
    )

    def __init__(self, *, cfg: MaskedModalityReconstructionConfig, context: TaskContext) -> None:
        self.cfg = cfg
        self.context = context
        self.cross_modal = context.server_round >= cfg.cross_modal_from_round
        self.contrastive = (context.server_round >= cfg.contrastive_from_round
                            and cfg.contrastive_weight > 0)

    def build_head(self, encoder: MultiModalEncoder) -> nn.Module:
        return TemplateHead(encoder, num_modalities=len(self.context.modalities),
                            template_size=self.cfg.template_size)

    def make_views(self, batch: Batch, generator: torch.Generator) -> Views:
        """Target modality, two block masks and view 2's cross-modal fill, per study.

        Returns views ``target``, ``mask1``, ``mask2``, ``fill2`` ``(N, 1, D, H, W)``,
        ``fill2_is_template (N,)`` (1 where view 2 uses the template), ``modality (N,)``
        and ``box (N, 2, 3)``. Studies with no present modality are skipped.
        """
        image, present = batch["image"], batch["present"] > 0.5
        n_batch = image.shape[0]
        rows, target_mod, other_mod = [], [], []
        for b in range(n_batch):
            idx = present[b].nonzero().flatten()
            if idx.numel() == 0:
                continue
            pick = idx[torch.randperm(idx.numel(), generator=generator)]
            rows.append(b)
            target_mod.append(int(pick[0]))
            other_mod.append(int(pick[1]) if pick.numel() > 1 else -1)
        if not rows:
            return Views({}, num_studies=0, skipped_studies=n_batch)
        r = torch.tensor(rows)
        mods = torch.tensor(target_mod)
        others = torch.tensor(other_mod)
        depth, height, width = image.shape[2:]
        size = (int(depth), int(height), int(width))
        mask1 = block_mask(len(rows), size, block=self.cfg.block_size, ratio=self.cfg.mask_ratio,
                           generator=generator)
        mask2 = block_mask(len(rows), size, block=self.cfg.block_size, ratio=self.cfg.mask_ratio,
                           generator=generator)
        use_other = (others >= 0) & self.cross_modal
        fill2 = torch.zeros(len(rows), 1, *size)
        if bool(use_other.any()):
            fill2[use_other] = image[r[use_other], others[use_other]].unsqueeze(1).float()
        tensors = {
            "target": image[r, mods].unsqueeze(1).float(),
            "mask1": mask1,
            "mask2": mask2,
            "fill2": fill2,
            "fill2_is_template": (~use_other).float(),
            "modality": mods,
            "box": batch["crop_box"][r].float(),
        }
        return Views(tensors, num_studies=len(rows), skipped_studies=n_batch - len(rows))

    def loss(self, views: Views, *, encoder: MultiModalEncoder, head: nn.Module) -> torch.Tensor:
        """``w1 * rec(view 1) + w2 * rec(view 2) + wc * InfoNCE(view 1, view 2)``."""
        assert isinstance(head, TemplateHead)
        t = views.tensors
        target, mask1, mask2 = t["target"], t["mask1"], t["mask2"]
        size = tuple(target.shape[2:])
        templ = head.template_windows(t["modality"], t["box"], size)  # type: ignore[arg-type]
        from_templ = t["fill2_is_template"].view(-1, 1, 1, 1, 1)
        fill2 = from_templ * templ + (1 - from_templ) * t["fill2"]
        x1 = target * (1 - mask1) + templ * mask1
        x2 = target * (1 - mask2) + fill2 * mask2
        feats = encoder.forward_features(torch.cat([x1, x2], dim=0))  # GroupNorm: per sample
        recon = head.decoder(feats, size)
        rec1, rec2 = recon.float().split(target.shape[0])
        loss = (self.cfg.rec_weight_view1 * masked_mse(rec1, target, mask1)
                + self.cfg.rec_weight_view2 * masked_mse(rec2, target, mask2))
        if self.contrastive and target.shape[0] >= 2:
            z = head.projection(feats[-1].mean(dim=(2, 3, 4)))
            z1, z2 = z.split(target.shape[0])
            loss = loss + self.cfg.contrastive_weight * info_nce(
                z1, z2, temperature=self.cfg.temperature)
        return loss


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the masked voxels (``mask`` 1) only."""
    return ((pred - target) ** 2 * mask).sum() / mask.sum().clamp_min(1.0)
