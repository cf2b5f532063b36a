"""AdaDN-style domain-adaptive denormalization in image space (pure tensor code).

Our reconstruction of Wen et al., "Cross-modal contrastive learning with domain-adaptive
denormalization", J. Biomed. Eng. 40(3):482-491, 2023 (the full text is not public; see
METHODS.md A). A source image is standardised with its own foreground moments and
re-scaled with a target domain's moments, so that it takes on another site's appearance
while its anatomy is unchanged::

    x_norm  = (x - mu_src) / (sigma_src + eps)
    x_adadn = sigma_tgt * x_norm + mu_tgt            (foreground voxels only)

With ``lam`` < 1 the target moments are first blended towards the source:
``mu' = (1 - lam) * mu_src + lam * mu_tgt`` (and likewise sigma).
"""

from __future__ import annotations

import torch

EPS = 1e-6


def adadn(
    x: torch.Tensor,
    *,
    src_mean: torch.Tensor,
    src_std: torch.Tensor,
    tgt_mean: torch.Tensor,
    tgt_std: torch.Tensor,
    lam: torch.Tensor | float = 1.0,
    eps: float = EPS,
) -> torch.Tensor:
    """Denormalize ``x`` from source to target moments on its foreground.

    Args:
        x: ``(N, 1, D, H, W)`` single-modality volumes; background voxels are exactly 0
            (skull-stripped) and stay 0.
        src_mean, src_std: ``(N,)`` the source study's foreground moments for this modality.
        tgt_mean, tgt_std: ``(N,)`` the target domain's moments.
        lam: scalar or ``(N,)`` blend weight in [0, 1]; 1 moves fully to the target.
        eps: keeps the division finite for a constant image.

    Returns:
        ``(N, 1, D, H, W)`` with the same background and shifted foreground intensities.
    """
    if x.ndim != 5:
        raise ValueError(f"expected x of shape (N, 1, D, H, W), got {tuple(x.shape)}")
    n = x.shape[0]
    for name, t in (("src_mean", src_mean), ("src_std", src_std),
                    ("tgt_mean", tgt_mean), ("tgt_std", tgt_std)):
        if t.shape != (n,):
            raise ValueError(f"expected {name} of shape ({n},), got {tuple(t.shape)}")
    lam_t = torch.as_tensor(lam, dtype=x.dtype, device=x.device).expand(n)
    mu = (1 - lam_t) * src_mean + lam_t * tgt_mean
    sigma = (1 - lam_t) * src_std + lam_t * tgt_std
    view = (n, 1, 1, 1, 1)
    x_norm = (x - src_mean.view(view)) / (src_std.view(view) + eps)
    out = sigma.view(view) * x_norm + mu.view(view)
    return torch.where(x != 0, out, torch.zeros_like(out))
