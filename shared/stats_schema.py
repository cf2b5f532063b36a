"""SiteStats and StatsPool: the only statistics allowed to leave a site, and their pool.

Everything here is in the model-input intensity space: per study and modality, foreground
voxels scaled to [0, 1] between foreground percentiles (client/data/transforms.py). A
SiteStats carries no site name, no study id and no exact count; ``extra="forbid"`` means
the outgoing guard rejects any payload with a field not declared here, and
``allow_inf_nan=False`` plus the finite checks below mean that a NaN or an infinity
anywhere fails validation (one non-finite release must never reach the pool, which every
site decodes in every round).
"""

from __future__ import annotations

import json
import math
from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from shared.config import FrozenModel
from shared.modalities import CANONICAL_MODALITIES

SITE_STATS_SCHEMA = "fedmm.site-stats/1"
STATS_POOL_SCHEMA = "fedmm.stats-pool/1"

#: Coarse patient-count buckets: (lower bound, label). A site reports only the bucket of a
#: noisy count (client/privacy.py), never a count.
STUDY_COUNT_BUCKETS: tuple[tuple[int, str], ...] = (
    (1000, "1000+"), (200, "200-999"), (50, "50-199"), (10, "10-49"), (0, "<10"),
)
BucketLabel = Literal["withheld", "<10", "10-49", "50-199", "200-999", "1000+"]


def bucket_study_count(n: int) -> BucketLabel:
    """Return the coarse bucket label of a count (post-processing clips a noisy one at 0)."""
    if n < 0:
        raise ValueError(f"a count cannot be negative, got {n}")
    for lower, label in STUDY_COUNT_BUCKETS:
        if n >= lower:
            return label  # type: ignore[return-value]
    raise AssertionError("unreachable: the last bucket starts at 0")


class _FiniteModel(FrozenModel):
    """Frozen, no unknown keys, and no NaN or infinity in any float (nested ones too)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class ModalityStats(_FiniteModel):
    """Noised foreground statistics of one modality at one site."""

    model_config = ConfigDict(allow_inf_nan=False)  # NaN passes comparisons; JSON has none

    mean: float = Field(ge=0, le=1)
    std: float = Field(gt=0, le=1)
    histogram: tuple[float, ...] = Field(min_length=4, max_length=256)

    @field_validator("histogram")
    @classmethod
    def _normalized(cls, h: tuple[float, ...]) -> tuple[float, ...]:
        total = math.fsum(h)
        if not all(math.isfinite(v) and v >= 0 for v in h) or not abs(total - 1.0) <= 1e-3:
            raise ValueError(f"histogram must be finite, non-negative and sum to 1, got "
                             f"sum {total:.4f} (min {min(h):.4g})")
        return h


class SiteStats(_FiniteModel):
    """One site's anonymized release (built only by client/privacy.py).

    ``studies`` is the coarse bucket of the site's largest noisy per-modality *patient*
    count (the name is kept for wire compatibility); ``epsilon`` is the whole release's
    pure-DP budget with respect to one patient (docs/privacy.md).
    """

    model_config = ConfigDict(allow_inf_nan=False)  # NaN passes comparisons; JSON has none

    schema_id: Literal["fedmm.site-stats/1"] = "fedmm.site-stats/1"
    withheld: bool
    studies: BucketLabel
    epsilon: float = Field(gt=0, description="Epsilon of this release (one patient, pure DP).")
    modalities: dict[str, ModalityStats] = Field(default_factory=dict)

    @field_validator("modalities")
    @classmethod
    def _known_names(cls, mods: dict[str, ModalityStats]) -> dict[str, ModalityStats]:
        unknown = sorted(set(mods) - set(CANONICAL_MODALITIES))
        if unknown:
            raise ValueError(f"modality keys must be canonical {CANONICAL_MODALITIES}, "
                             f"got {unknown}")
        return mods

    @model_validator(mode="after")
    def _withheld_is_empty(self) -> SiteStats:
        if self.withheld and (self.modalities or self.studies != "withheld"):
            raise ValueError("a withheld SiteStats must carry no modalities and studies='withheld'")
        if not self.withheld and self.studies == "withheld":
            raise ValueError("studies='withheld' is only valid with withheld=true")
        if not self.withheld and not self.modalities:
            raise ValueError("a SiteStats that is not withheld must carry at least one modality")
        return self

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> SiteStats:
        return cls.model_validate(json.loads(text))


class StatsPool(_FiniteModel):
    """The server's anonymous pool: per modality, the shuffled released ModalityStats."""

    model_config = ConfigDict(allow_inf_nan=False)  # NaN passes comparisons; JSON has none

    schema_id: Literal["fedmm.stats-pool/1"] = "fedmm.stats-pool/1"
    modalities: dict[str, tuple[ModalityStats, ...]] = Field(default_factory=dict)
    contributors: int = Field(default=0, ge=0, description="Sites whose stats were released.")
    withheld: int = Field(default=0, ge=0, description="Sites that withheld (too few patients).")
    release_epsilons: tuple[float, ...] = Field(
        default=(),
        description="The epsilon of every pooled release (contributing and withheld), sorted, "
        "with no site or node id: what the model card reports.",
    )

    @field_validator("release_epsilons")
    @classmethod
    def _positive_sorted(cls, eps: tuple[float, ...]) -> tuple[float, ...]:
        if any(e <= 0 for e in eps):
            raise ValueError(f"release epsilons must be positive, got {list(eps)}")
        return tuple(sorted(eps))

    def targets(self, modality: str) -> tuple[ModalityStats, ...]:
        """The pooled entries for ``modality`` (empty when no site released it)."""
        return self.modalities.get(modality, ())

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> StatsPool:
        return cls.model_validate(json.loads(text))
