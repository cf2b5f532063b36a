"""Pure numpy: a deterministic 2D PCA of embeddings, two numbers for how much site dominates,
and how many dimensions the embeddings really use."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Projection:
    """Points in the plane of the first two principal components.

    Attributes:
        points: ``(N, 2)`` coordinates.
        explained: fraction of the total variance along each of the two axes.
    """

    points: np.ndarray
    explained: tuple[float, float]


def _as_matrix(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"expected embeddings of shape (N, C) with N >= 1, got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("expected finite embeddings, got NaN or inf")
    return x


def pca_2d(x: np.ndarray) -> Projection:
    """Project ``(N, C)`` embeddings on their first two principal components (via SVD).

    Deterministic: SVD signs are arbitrary, so each axis is flipped to make its largest
    loading positive; fewer than two non-trivial components give zero coordinates.
    """
    x = _as_matrix(x)
    centred = x - x.mean(axis=0, keepdims=True)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    points = np.zeros((x.shape[0], 2))
    k = min(2, vt.shape[0])
    for axis in range(k):
        component = vt[axis]
        if component[np.argmax(np.abs(component))] < 0:
            component = -component
        points[:, axis] = centred @ component
    total = float((s**2).sum())
    ratios = [float(s[i] ** 2 / total) if total > 0 and i < len(s) else 0.0 for i in range(2)]
    return Projection(points=points, explained=(ratios[0], ratios[1]))


def _check_groups(x: np.ndarray, labels: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    x = _as_matrix(x)
    if len(labels) != x.shape[0]:
        raise ValueError(f"expected one label per embedding ({x.shape[0]}), got {len(labels)}")
    groups = sorted(set(labels))
    if len(groups) < 2:
        raise ValueError(f"expected at least two sites to compare, got {groups}")
    return x, groups


def silhouette_by_group(x: np.ndarray, labels: Sequence[str]) -> float:
    """Mean silhouette (Rousseeuw 1987) of the grouping ``labels``, Euclidean distances.

    For each point, ``a`` = mean distance to the other points of its group, ``b`` = the
    smallest mean distance to another group, ``s = (b - a) / max(a, b)`` (0 for a point
    alone in its group). Near 1: groups are tight and apart (site dominates); near 0 or
    below: groups overlap.
    """
    x, groups = _check_groups(x, labels)
    sq = (x * x).sum(axis=1)
    dist = np.sqrt(np.clip(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0, None))
    lab = np.asarray(labels)
    masks = {g: lab == g for g in groups}
    scores = np.zeros(x.shape[0])
    for i in range(x.shape[0]):
        own = masks[lab[i]]
        n_own = int(own.sum())
        if n_own < 2:
            continue
        a = dist[i, own].sum() / (n_own - 1)
        b = min(dist[i, m].mean() for g, m in masks.items() if g != lab[i])
        denom = max(a, b)
        scores[i] = (b - a) / denom if denom > 0 else 0.0
    return float(scores.mean())


def site_variance_fraction(x: np.ndarray, labels: Sequence[str]) -> float:
    """Share of the embeddings' total variance explained by site: between-site / total sum of
    squares, in [0, 1] (0: site means coincide; 1: every site is a single point)."""
    x, groups = _check_groups(x, labels)
    lab = np.asarray(labels)
    centre = x.mean(axis=0)
    total = float(((x - centre) ** 2).sum())
    if total <= 0:
        return 0.0
    between = sum(float((lab == g).sum()) * float(((x[lab == g].mean(axis=0) - centre) ** 2).sum())
                  for g in groups)
    return between / total


def effective_dimensions(x: np.ndarray) -> float:
    """The participation ratio ``(sum l)^2 / sum l^2`` of the covariance eigenvalues ``l``.

    Between 1 (every embedding on one line: a collapsed representation) and
    ``min(N - 1, C)`` (variance spread evenly over all directions); 0 when all points
    coincide. A drop after pretraining is the dimensional collapse self-supervised
    objectives are known for (Jing et al., ICLR 2022).
    """
    x = _as_matrix(x)
    s = np.linalg.svd(x - x.mean(axis=0, keepdims=True), compute_uv=False)
    eig = s**2
    denom = float((eig**2).sum())
    return float(eig.sum() ** 2 / denom) if denom > 0 else 0.0
