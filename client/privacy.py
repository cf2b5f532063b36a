"""Turns a site's exact statistics into the anonymized SiteStats that may leave it.

Three protections, all applied here and nowhere else:

1. **k-threshold**: a site with fewer than ``privacy.min_studies`` studies (or a modality
   seen in fewer) releases nothing for it (``withheld``).
2. **Laplace noise** calibrated to each statistic's sensitivity. Per-study values are
   bounded (means in [0, 1], standard deviations in [0, 0.5], normalized histograms with
   L1 norm 1), so replacing one study moves an average over ``n`` studies by at most
   ``1/n``, ``0.5/n`` and ``2/n`` (L1) respectively. The total budget ``epsilon`` is split
   evenly over released modalities and, within one, 45 % mean, 45 % std, 10 % histogram
   (AdaDN uses the moments; the histogram is coarse context). By basic composition the
   whole release is ``epsilon``-differentially private with respect to one study.
3. **No identifiers**: no site name, no study id, no exact count (only a coarse bucket);
   the schema (shared/stats_schema.py) forbids any other field.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from client.stats import ModalitySummary
from shared.config import PrivacyConfig
from shared.stats_schema import ModalityStats, SiteStats, bucket_study_count

_SHARE_MEAN, _SHARE_STD, _SHARE_HIST = 0.45, 0.45, 0.10
_STD_FLOOR = 1e-3


def anonymize_site_stats(
    summary: Mapping[str, ModalitySummary],
    *,
    num_studies: int,
    privacy: PrivacyConfig,
    rng: np.random.Generator,
) -> SiteStats:
    """Build the SiteStats release from exact per-modality summaries.

    Args:
        summary: exact per-modality averages (client/stats.py).
        num_studies: valid studies at the site (only its coarse bucket is released).
        privacy: k-threshold and epsilon.
        rng: noise source; a site uses fresh OS entropy, tests a seeded generator.
    """
    if num_studies < privacy.min_studies:
        return SiteStats(withheld=True, studies="withheld", epsilon=privacy.epsilon)
    released = {m: s for m, s in summary.items() if s.num_studies >= privacy.min_studies}
    if not released:
        return SiteStats(withheld=True, studies="withheld", epsilon=privacy.epsilon)
    eps_modality = privacy.epsilon / len(released)
    modalities = {}
    for name, s in released.items():
        n = s.num_studies
        mean = s.mean + rng.laplace(0.0, (1.0 / n) / (eps_modality * _SHARE_MEAN))
        std = s.std + rng.laplace(0.0, (0.5 / n) / (eps_modality * _SHARE_STD))
        hist = s.histogram + rng.laplace(
            0.0, (2.0 / n) / (eps_modality * _SHARE_HIST), size=s.histogram.shape
        )
        # Post-processing (clipping, renormalizing) costs no privacy.
        hist = np.clip(hist, 0.0, None)
        hist = hist / hist.sum() if hist.sum() > 0 else np.full_like(hist, 1.0 / hist.size)
        modalities[name] = ModalityStats(
            mean=float(np.clip(mean, 0.0, 1.0)),
            std=float(np.clip(std, _STD_FLOOR, 0.5)),
            histogram=tuple(float(v) for v in hist),
        )
    return SiteStats(
        withheld=False,
        studies=bucket_study_count(num_studies),
        epsilon=privacy.epsilon,
        modalities=modalities,
    )
