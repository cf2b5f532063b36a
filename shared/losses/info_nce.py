"""InfoNCE / NT-Xent over two views (Chen et al., SimCLR, ICML 2020; Oord et al. 2018)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(z1: torch.Tensor, z2: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """Symmetric NT-Xent loss where ``z1[i]`` and ``z2[i]`` are positives.

    With the ``2N`` L2-normalised embeddings ``u`` (both views stacked) and
    ``s_ij = u_i . u_j / temperature``, each anchor ``i`` with positive ``p(i)`` scores::

        l_i = -log( exp(s_i,p(i)) / sum_{j != i} exp(s_ij) )

    and the loss is the mean of ``l_i`` over all ``2N`` anchors. Every other study in the
    batch (in either view) is a negative. In fedmm the two views are different modalities
    of the same study at the same location (Wen et al. 2023, docs/methods.md, cross_modal_contrastive).

    Args:
        z1, z2: ``(N, K)`` projections of the two views, ``N >= 2``.
        temperature: softmax temperature (> 0).
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"expected two (N, K) tensors of equal shape, got {tuple(z1.shape)} "
                         f"and {tuple(z2.shape)}")
    if z1.shape[0] < 2:
        raise ValueError(f"InfoNCE needs at least 2 pairs for negatives, got {z1.shape[0]}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    n = z1.shape[0]
    u = F.normalize(torch.cat([z1, z2], dim=0).float(), dim=1)
    logits = u @ u.t() / temperature
    logits.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(u.device)
    return F.cross_entropy(logits, targets)
