"""The statistics release: an epsilon-DP draw per patient, then free post-processing.

The privacy unit is the **patient** (client/patient_contributions.py bounds each patient
to one row per modality). A release is planned from the run's settings alone: for each
requested modality (``data.modalities``) and each field, a fixed share of
``privacy.epsilon``:

    epsilon / M per modality, split  count 25 %  mean 30 %  std 25 %  histogram 20 %

so the split never depends on what the site holds. Each field is one OpenDP measurement
(client/dp_mechanisms.py): a noisy patient count, noisy sums of clamped per-patient
means and standard deviations, and a noisy histogram. By basic composition the draw is
``epsilon``-DP with respect to adding or removing one patient; OpenDP's privacy maps give
each field's cost and their sum is checked against the plan.

Everything the site sends is computed from the noisy draw and public settings only
(post-processing costs nothing). A modality is released when its noisy patient count
reaches ``k - 1 + t``, with k = ``privacy.min_studies`` (in patients) and t the smallest
integer the count noise reaches with probability at most 5 %: a modality that fewer than
k patients have (none at all included) is released with probability at most 5 %, and
with little noise (t = 1) the rule is the plain "at least k". The site is withheld when no
modality is released, the coarse bucket is that of the largest noisy count, and
mean = noisy sum / noisy count, clamped to its bounds.
The draw itself is kept in the site's privacy ledger, so a later run with another k
post-processes the same draw instead of drawing fresh noise.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from pydantic import ConfigDict, Field

from client.dp_mechanisms import (
    MECHANISM,
    Mechanism,
    count_mechanism,
    histogram_mechanism,
    histogram_rows,
    sum_mechanism,
)
from client.patient_contributions import MEAN_BOUNDS, STD_BOUNDS, ModalityColumns
from shared.config import FrozenModel
from shared.stats_schema import ModalityStats, SiteStats, bucket_study_count

#: Share of one modality's budget per field: fixed in advance, public.
FIELD_SHARES: Mapping[str, float] = {"count": 0.25, "mean": 0.30, "std": 0.25, "histogram": 0.20}
#: Largest chance that a modality held by fewer than k patients is released.
FALSE_RELEASE_PROBABILITY = 0.05
_STD_FLOOR = 1e-3


def count_margin(scale: float, *, probability: float = FALSE_RELEASE_PROBABILITY) -> int:
    """Smallest integer t with P(Z >= t) <= ``probability`` for discrete Laplace noise Z.

    OpenDP's discrete Laplace of scale b has P(Z = z) proportional to a^|z|, a = e^(-1/b),
    so P(Z >= t) = a^t / (1 + a) for t >= 1.
    """
    if not scale > 0 or not 0 < probability < 0.5:
        raise ValueError(f"expected scale > 0 and 0 < probability < 0.5, got {scale}, {probability}")
    a = math.exp(-1.0 / scale)
    return max(1, math.ceil(math.log(probability * (1 + a)) / math.log(a)))


def release_chance(patients: int, *, min_patients: int, scale: float) -> float:
    """Probability that a modality of ``patients`` patients is released (for the site's own
    `site check`; computed from the exact count, so never sent)."""
    a = math.exp(-1.0 / scale)
    t = release_threshold(min_patients, scale) - patients  # the noise must reach t

    def at_least(u: int) -> float:  # P(Z >= u) for u >= 1
        return a**u / (1 + a)

    return at_least(t) if t >= 1 else 1.0 - at_least(1 - t)


def release_threshold(min_patients: int, scale: float) -> int:
    """The noisy count a modality needs: ``k - 1 + count_margin(scale)``.

    With fewer than k patients the count noise must reach the margin, which it does with
    probability at most ``FALSE_RELEASE_PROBABILITY``.
    """
    if min_patients < 1:
        raise ValueError(f"expected k (privacy.min_studies) >= 1, got {min_patients}")
    return min_patients - 1 + count_margin(scale)


@dataclass(frozen=True)
class ReleasePlan:
    """Which measurements a release draws and what each costs (from settings alone).

    Attributes:
        epsilon: the budget of the whole release (``privacy.epsilon``).
        modalities: the run's requested modalities (each gets ``epsilon / M``).
        bins: histogram bins (``data.hist_bins``).
        mechanisms: ``(modality, field) -> Mechanism``, for every modality and field.
    """

    epsilon: float
    modalities: tuple[str, ...]
    bins: int
    mechanisms: Mapping[tuple[str, str], Mechanism]

    @property
    def spent(self) -> float:
        """Epsilon of the draw by basic composition of OpenDP's privacy maps (<= ``epsilon``)."""
        return float(sum(m.epsilon for m in self.mechanisms.values()))

    def field_epsilons(self) -> dict[str, float]:
        """``"<modality>.<field>" -> epsilon`` (what the ledger records)."""
        return {f"{m}.{f}": mech.epsilon for (m, f), mech in self.mechanisms.items()}


@functools.lru_cache(maxsize=64)
def plan_release(*, modalities: tuple[str, ...], bins: int, epsilon: float) -> ReleasePlan:
    """The measurements of a release of ``modalities`` at ``epsilon`` (cached: it is pure).

    Raises:
        ValueError: no modality, a non-positive epsilon, or OpenDP's maps exceed the plan.
    """
    if not modalities or len(set(modalities)) != len(modalities):
        raise ValueError(f"expected distinct requested modalities, got {list(modalities)}")
    if not np.isfinite(epsilon) or epsilon <= 0:
        raise ValueError(f"expected a finite, positive privacy.epsilon, got {epsilon!r}")
    per_modality = epsilon / len(modalities)
    mechanisms: dict[tuple[str, str], Mechanism] = {}
    for name in sorted(modalities):
        share = {f: per_modality * s for f, s in FIELD_SHARES.items()}
        mechanisms[(name, "count")] = count_mechanism(share["count"])
        mechanisms[(name, "mean")] = sum_mechanism(MEAN_BOUNDS, share["mean"])
        mechanisms[(name, "std")] = sum_mechanism(STD_BOUNDS, share["std"])
        mechanisms[(name, "histogram")] = histogram_mechanism(bins, share["histogram"])
    plan = ReleasePlan(epsilon=epsilon, modalities=tuple(sorted(modalities)), bins=bins,
                       mechanisms=mechanisms)
    if not plan.spent <= epsilon * (1 + 1e-12):
        raise ValueError(f"OpenDP's privacy maps add up to {plan.spent}, more than the planned "
                         f"epsilon {epsilon}")
    return plan


class ModalityDraw(FrozenModel):
    """The noisy measurements of one modality (kept in the ledger, never sent as such)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    count: int
    count_scale: float = Field(gt=0, description="The count's discrete Laplace scale (public).")
    mean_sum: float
    std_sum: float
    histogram: tuple[int, ...] = Field(min_length=1)


class ReleaseDraw(FrozenModel):
    """One epsilon-DP draw: every planned measurement, and what the whole draw cost."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    epsilon: float = Field(gt=0)
    mechanism: str = MECHANISM
    modalities: dict[str, ModalityDraw]


def draw_release(columns: Mapping[str, ModalityColumns], plan: ReleasePlan) -> ReleaseDraw:
    """Run every measurement of ``plan`` once on the patients' columns (fresh OS entropy).

    Args:
        columns: per requested modality, one row per patient (zero rows allowed: the
            measurements still run, so that absence is as noisy as presence).
    """
    missing = sorted(set(plan.modalities) - set(columns))
    if missing:
        raise ValueError(f"expected columns for every planned modality, missing {missing}")
    out = {}
    for name in plan.modalities:
        col = columns[name]
        if col.patients and col.histograms.shape[1] != plan.bins:
            raise ValueError(f"expected {plan.bins} histogram bins for {name}, got "
                             f"{col.histograms.shape[1]}")
        means = np.ascontiguousarray(col.means, dtype=np.float64)
        stds = np.ascontiguousarray(col.stds, dtype=np.float64)
        out[name] = ModalityDraw(
            count=int(plan.mechanisms[(name, "count")](means)),
            count_scale=plan.mechanisms[(name, "count")].scale,
            mean_sum=float(plan.mechanisms[(name, "mean")](means)),
            std_sum=float(plan.mechanisms[(name, "std")](stds)),
            histogram=tuple(int(v) for v in plan.mechanisms[(name, "histogram")](
                histogram_rows(col.histograms))),
        )
    return ReleaseDraw(epsilon=plan.epsilon, modalities=out)


def site_stats_from(draw: ReleaseDraw, *, min_patients: int) -> SiteStats:
    """Post-process a draw into the SiteStats a site sends (no data touched, no cost).

    Args:
        draw: the kept or freshly drawn measurements.
        min_patients: k (``privacy.min_studies``): a modality is released when its noisy
            patient count is at least ``release_threshold(k, scale)``; the site is withheld
            when no modality is.
    """
    released = {name: d for name, d in sorted(draw.modalities.items())
                if d.count >= release_threshold(min_patients, d.count_scale)}
    if not released:
        return SiteStats(withheld=True, studies="withheld", epsilon=draw.epsilon)
    largest = max(max(d.count for d in draw.modalities.values()), 0)
    return SiteStats(
        withheld=False,
        studies=bucket_study_count(largest),
        epsilon=draw.epsilon,
        modalities={name: _modality_stats(d) for name, d in released.items()},
    )


def _modality_stats(d: ModalityDraw) -> ModalityStats:
    n = float(max(d.count, 1))
    hist = np.clip(np.asarray(d.histogram, dtype=np.float64), 0.0, None)
    total = hist.sum()
    hist = hist / total if total > 0 else np.full(hist.shape, 1.0 / hist.size)
    return ModalityStats(
        mean=float(np.clip(d.mean_sum / n, *MEAN_BOUNDS)),
        std=float(np.clip(d.std_sum / n, _STD_FLOOR, STD_BOUNDS[1])),
        histogram=tuple(float(v) for v in hist),
    )
