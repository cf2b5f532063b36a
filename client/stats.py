"""Per-modality foreground statistics of a site, computed on site from its studies."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from shared.stats_schema import ModalityStats


@dataclass(frozen=True)
class ModalitySummary:
    """Exact (un-noised) averages over the studies that have one modality. Never sent."""

    num_studies: int
    mean: float          # average of per-study foreground means, in [0, 1]
    std: float           # average of per-study foreground standard deviations
    histogram: np.ndarray  # (bins,) average of per-study normalized histograms


def summarize_site(
    study_stats: Sequence[Mapping[str, np.ndarray]], *, modalities: Sequence[str]
) -> dict[str, ModalitySummary]:
    """Average per-study foreground statistics per modality.

    Args:
        study_stats: one mapping per study with ``present (M,)``, ``fg_mean (M,)``,
            ``fg_std (M,)`` and ``fg_hist (M, bins)`` in the run's modality order.
        modalities: the run's modality names (length M).

    Returns:
        modality name -> summary, only for modalities present in at least one study.
    """
    out: dict[str, ModalitySummary] = {}
    for m, name in enumerate(modalities):
        rows = [s for s in study_stats if float(s["present"][m]) > 0.5]
        if not rows:
            continue
        out[name] = ModalitySummary(
            num_studies=len(rows),
            mean=float(np.mean([r["fg_mean"][m] for r in rows])),
            std=float(np.mean([r["fg_std"][m] for r in rows])),
            histogram=np.mean([r["fg_hist"][m] for r in rows], axis=0),
        )
    return out


def own_modality_stats(summary: Mapping[str, ModalitySummary]) -> dict[str, ModalityStats]:
    """The site's own statistics as ModalityStats (AdaDN's own-site fallback; stays local)."""
    stats = {}
    for name, s in summary.items():
        hist = np.clip(s.histogram, 0, None)
        total = hist.sum()
        hist = hist / total if total > 0 else np.full_like(hist, 1.0 / len(hist))
        stats[name] = ModalityStats(
            mean=float(np.clip(s.mean, 0, 1)),
            std=float(np.clip(s.std, 1e-3, 1)),
            histogram=tuple(float(v) for v in hist),
        )
    return stats
