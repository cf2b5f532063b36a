"""Cross-modal contrastive learning with AdaDN augmentation (Wen et al. 2023, docs/methods.md).

Positives are two *different modalities of the same study at the same location* (an
aligned crop), negatives are the other studies of the batch; each view may be
denormalized towards another site's appearance with AdaDN, using target moments from the
server's anonymized statistics pool (this site's own statistics when the pool lacks the
modality). AdaDN itself is our reconstruction (shared/adadn.py); ``adadn.target``,
``adadn.interpolate``, ``adadn.jitter`` and ``adadn.matching`` pick among the variants of
docs/methods.md (pool, own site, a draw around the pool; two moments or whole histograms).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import nn

from shared.adadn import adadn, histogram_match
from shared.config import CrossModalContrastiveConfig
from shared.losses.info_nce import info_nce
from shared.model.encoder import MultiModalEncoder
from shared.pretext.base import Batch, TaskContext, TaskRequirements, Views
from shared.pretext.registry import register_pretext
from shared.stats_schema import ModalityStats


@register_pretext("cross_modal_contrastive")
class CrossModalContrastiveTask:
    """InfoNCE between two modalities of one study, with AdaDN-augmented views."""

    name: ClassVar[str]
    requirements: ClassVar[TaskRequirements] = TaskRequirements(min_modalities=2)

    def __init__(self, *, cfg: CrossModalContrastiveConfig, context: TaskContext) -> None:
        self.cfg = cfg
        self.context = context
        self._targets = {m: self._target_table(m) for m in context.modalities}

    def _target_table(self, modality: str) -> tuple[torch.Tensor, list[torch.Tensor]] | None:
        """Candidate targets for a modality: ``(K, 2)`` (mean, std) and K histograms.

        Each histogram keeps its own bin count (all equal when every site runs the same
        config). None when neither the pool (for 'pool' and 'pool_jitter') nor this site
        knows the modality.
        """
        entries: tuple[ModalityStats, ...] = ()
        if self.cfg.adadn.target != "own_site" and self.context.pool is not None:
            entries = self.context.pool.targets(modality)
        if not entries and modality in self.context.own_stats:
            entries = (self.context.own_stats[modality],)
        if not entries:
            return None
        moments = torch.tensor([[e.mean, e.std] for e in entries], dtype=torch.float32)
        hists = [torch.tensor(e.histogram, dtype=torch.float32) for e in entries]
        return moments, hists

    def build_head(self, encoder: MultiModalEncoder) -> nn.Module:
        """SimCLR-style projection MLP: ``(N, encoder_dim) -> (N, projection_dim)``."""
        encoder_dim = encoder.out_dim
        return nn.Sequential(
            nn.Linear(encoder_dim, encoder_dim),
            nn.ReLU(inplace=True),
            nn.Linear(encoder_dim, self.cfg.projection_dim),
        )

    def make_views(self, batch: Batch, generator: torch.Generator) -> Views:
        """Pick two present modalities per study and AdaDN-augment each view.

        Returns views ``view1``, ``view2`` of shape ``(N, 1, D, H, W)``, N the number of
        studies with at least two present modalities (others are counted as skipped).
        """
        image, present = batch["image"], batch["present"] > 0.5
        rows: list[int] = []
        mod_a: list[int] = []
        mod_b: list[int] = []
        for b in range(image.shape[0]):
            idx = present[b].nonzero().flatten()
            if idx.numel() < self.requirements.min_modalities:
                continue
            pick = idx[torch.randperm(idx.numel(), generator=generator)[:2]]
            rows.append(b)
            mod_a.append(int(pick[0]))
            mod_b.append(int(pick[1]))
        skipped = image.shape[0] - len(rows)
        if len(rows) < 2:  # InfoNCE needs a negative
            return Views({}, num_studies=0, skipped_studies=image.shape[0])
        r = torch.tensor(rows)
        views = {}
        for key, mods in (("view1", torch.tensor(mod_a)), ("view2", torch.tensor(mod_b))):
            x = image[r, mods].unsqueeze(1).float()
            views[key] = self._augment(
                x, mods=mods, src_mean=batch["fg_mean"][r, mods].float(),
                src_std=batch["fg_std"][r, mods].float(),
                src_hist=batch["fg_hist"][r, mods].float(), generator=generator,
            )
        return Views(views, num_studies=len(rows), skipped_studies=skipped)

    def _augment(
        self,
        x: torch.Tensor,
        *,
        mods: torch.Tensor,
        src_mean: torch.Tensor,
        src_std: torch.Tensor,
        src_hist: torch.Tensor,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """AdaDN on a random subset (``adadn.probability``) of the ``(N, 1, D, H, W)`` views.

        A view keeps its own statistics (an identity map) where it is not picked or where
        no target is known for its modality.
        """
        opts = self.cfg.adadn
        n = x.shape[0]
        # Draw every random number even where unused, so views replay for a seed.
        apply = torch.rand(n, generator=generator) < opts.probability
        pick = torch.rand(n, generator=generator)
        lam = torch.rand(n, generator=generator) if opts.interpolate else torch.ones(n)
        shake = 2 * torch.rand(n, 2, generator=generator) - 1  # pool_jitter draws in [-1, 1)
        tgt_mean, tgt_std, tgt_hist = src_mean.clone(), src_std.clone(), src_hist.clone()
        moved = torch.zeros(n, dtype=torch.bool)
        for i in range(n):
            table = self._targets[self.context.modalities[int(mods[i])]]
            if table is None or not apply[i]:
                continue
            moments, hists = table
            k = min(int(pick[i] * moments.shape[0]), moments.shape[0] - 1)
            tgt_mean[i], tgt_std[i] = moments[k, 0], moments[k, 1]
            if opts.matching == "histogram":
                tgt_hist[i] = _rebin(hists[k], src_hist.shape[1])
            moved[i] = True
        if opts.matching == "moments":
            out = adadn(x, src_mean=src_mean, src_std=src_std,
                        tgt_mean=tgt_mean, tgt_std=tgt_std, lam=lam)
        else:
            out = histogram_match(x, src_hist=src_hist, tgt_hist=tgt_hist,
                                  lam=torch.where(moved, lam, torch.zeros(n)))
        if opts.target != "pool_jitter":
            return out
        # A draw around the target: mean +- jitter * std, std * (1 +- jitter).
        mean = (1 - lam) * src_mean + lam * tgt_mean
        std = (1 - lam) * src_std + lam * tgt_std
        new_mean = torch.where(moved, mean + opts.jitter * std * shake[:, 0], mean)
        new_std = torch.where(moved, (std * (1 + opts.jitter * shake[:, 1])).clamp_min(1e-3), std)
        return adadn(out, src_mean=mean, src_std=std, tgt_mean=new_mean, tgt_std=new_std)

    def loss(self, views: Views, *, encoder: MultiModalEncoder, head: nn.Module) -> torch.Tensor:
        """Symmetric InfoNCE between the two views' projections."""
        v1, v2 = views.tensors["view1"], views.tensors["view2"]
        z = head(encoder(torch.cat([v1, v2], dim=0)))  # one pass: GroupNorm is per-sample
        z1, z2 = z.split(v1.shape[0])
        return info_nce(z1, z2, temperature=self.cfg.temperature)


def _rebin(histogram: torch.Tensor, bins: int) -> torch.Tensor:
    """A histogram over [0, 1] with ``bins`` equal bins (resampled through its cumulative sum
    when its own bin count differs)."""
    if histogram.numel() == bins:
        return histogram
    old = np.concatenate([[0.0], np.cumsum(histogram.numpy())])
    new = np.interp(np.linspace(0, 1, bins + 1), np.linspace(0, 1, histogram.numel() + 1), old)
    return torch.from_numpy(np.diff(new)).float()
