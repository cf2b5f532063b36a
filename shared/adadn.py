"""AdaDN-style domain-adaptive denormalization in image space (pure tensor code).

Our reconstruction of Wen et al., "Cross-modal contrastive learning with domain-adaptive
denormalization", J. Biomed. Eng. 40(3):482-491, 2023 (the full text is not public; see
docs/methods.md, cross_modal_contrastive). A source image is standardised with its own foreground moments and
re-scaled with a target domain's moments, so that it takes on another site's appearance
while its anatomy is unchanged::

    x_norm  = (x - mu_src) / (sigma_src + eps)
    x_adadn = sigma_tgt * x_norm + mu_tgt            (foreground voxels only)

With ``lam`` < 1 the target moments are first blended towards the source:
``mu' = (1 - lam) * mu_src + lam * mu_tgt`` (and likewise sigma).

``histogram_match`` is the option that matches whole intensity distributions instead of
two moments: foreground voxels go through ``F_tgt^-1(F_src(x))``, with both cumulative
distributions read piecewise-linearly from histograms over [0, 1], and with ``lam`` < 1
the output is ``(1 - lam) * x + lam * matched``.
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


def histogram_match(
    x: torch.Tensor,
    *,
    src_hist: torch.Tensor,
    tgt_hist: torch.Tensor,
    lam: torch.Tensor | float = 1.0,
) -> torch.Tensor:
    """Map foreground intensities of ``x`` onto a target histogram (quantile matching).

    Args:
        x: ``(N, 1, D, H, W)`` single-modality volumes with intensities in [0, 1] and
            background voxels exactly 0 (they stay 0).
        src_hist: ``(N, bins)`` the source study's foreground histogram over [0, 1].
        tgt_hist: ``(N, bins)`` the target domain's histogram over the same bins.
        lam: scalar or ``(N,)`` blend weight in [0, 1]; 1 moves fully to the target.

    Returns:
        ``(N, 1, D, H, W)``: each foreground voxel moved to the target quantile of its
        source quantile; the order of intensities within a volume is kept.
    """
    if x.ndim != 5:
        raise ValueError(f"expected x of shape (N, 1, D, H, W), got {tuple(x.shape)}")
    n = x.shape[0]
    for name, h in (("src_hist", src_hist), ("tgt_hist", tgt_hist)):
        if h.ndim != 2 or h.shape[0] != n:
            raise ValueError(f"expected {name} of shape ({n}, bins), got {tuple(h.shape)}")
    if src_hist.shape != tgt_hist.shape:
        raise ValueError(f"source and target histograms need the same bins, got "
                         f"{tuple(src_hist.shape)} and {tuple(tgt_hist.shape)}")
    edges = torch.linspace(0, 1, src_hist.shape[1] + 1, dtype=x.dtype, device=x.device)
    edges = edges.expand(n, -1).contiguous()
    flat = x.reshape(n, -1).clamp(0, 1)
    quantile = _interp(flat, edges, _cdf(src_hist.to(x)))
    matched = _interp(quantile, _cdf(tgt_hist.to(x)), edges)
    lam_t = torch.as_tensor(lam, dtype=x.dtype, device=x.device).expand(n).view(n, 1)
    out = ((1 - lam_t) * flat + lam_t * matched).view_as(x)
    return torch.where(x != 0, out, torch.zeros_like(out))


def _cdf(hist: torch.Tensor) -> torch.Tensor:
    """``(N, bins + 1)`` cumulative distribution at the bin edges, from 0 to exactly 1."""
    hist = hist.clamp_min(0) + EPS  # no empty bin: the inverse stays single-valued
    cdf = torch.cumsum(hist, dim=1) / hist.sum(dim=1, keepdim=True)
    return torch.cat([torch.zeros_like(cdf[:, :1]), cdf], dim=1)


def _interp(v: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Row-wise ``numpy.interp``: ``(N, V)`` values on the increasing ``(N, K)`` knots ``xp``."""
    idx = torch.searchsorted(xp, v.contiguous(), right=True).clamp(1, xp.shape[1] - 1)
    x0, x1 = xp.gather(1, idx - 1), xp.gather(1, idx)
    f0, f1 = fp.gather(1, idx - 1), fp.gather(1, idx)
    w = ((v - x0) / (x1 - x0).clamp_min(EPS)).clamp(0, 1)
    return f0 + w * (f1 - f0)
