"""What leaves a site: k-threshold, no identifiers, calibrated noise, schema enforcement."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from client.privacy import anonymize_site_stats
from client.stats import summarize_site
from shared.config import PrivacyConfig
from shared.stats_schema import SiteStats, bucket_study_count

MODS = ("t1", "t2")


def studies(n: int, *, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        hist = rng.random((2, 8))
        out.append({"present": np.ones(2), "fg_mean": rng.uniform(0.3, 0.5, 2),
                    "fg_std": rng.uniform(0.1, 0.2, 2), "fg_hist": hist / hist.sum(1, keepdims=True)})
    return out


def test_small_site_is_withheld() -> None:
    s = studies(3)
    rel = anonymize_site_stats(summarize_site(s, modalities=MODS), num_studies=3,
                               privacy=PrivacyConfig(min_studies=5), rng=np.random.default_rng(0))
    assert rel.withheld and rel.modalities == {} and rel.studies == "withheld"


def test_rare_modality_is_withheld_alone() -> None:
    s = studies(8)
    for row in s[2:]:
        row["present"] = np.array([1.0, 0.0])
    rel = anonymize_site_stats(summarize_site(s, modalities=MODS), num_studies=8,
                               privacy=PrivacyConfig(min_studies=5), rng=np.random.default_rng(0))
    assert set(rel.modalities) == {"t1"}


def test_release_has_no_identifiers_and_only_a_bucket() -> None:
    s = studies(37)
    rel = anonymize_site_stats(summarize_site(s, modalities=MODS), num_studies=37,
                               privacy=PrivacyConfig(), rng=np.random.default_rng(0))
    def scalars(v):
        if isinstance(v, dict):
            for x in v.values():
                yield from scalars(x)
        elif isinstance(v, list):
            for x in v:
                yield from scalars(x)
        else:
            yield v

    values = list(scalars(json.loads(rel.to_json())))
    assert not [v for v in values if isinstance(v, int) and not isinstance(v, bool)], "no counts"
    assert 37 not in values
    assert rel.studies == "10-49" == bucket_study_count(37)
    assert set(SiteStats.model_fields) == {"schema_id", "withheld", "studies", "epsilon", "modalities"}


def test_noise_scale_follows_sensitivity_and_epsilon() -> None:
    s = studies(20)
    summary = summarize_site(s, modalities=MODS)
    exact = summary["t1"].mean

    def spread(eps: float) -> float:
        vals = [anonymize_site_stats(summary, num_studies=20, privacy=PrivacyConfig(epsilon=eps),
                                     rng=np.random.default_rng(i)).modalities["t1"].mean
                for i in range(400)]
        return float(np.std(np.array(vals) - exact))

    # Laplace scale b = (1/n) / (eps/M * 0.45); std = sqrt(2) b. M = 2 modalities.
    expected = np.sqrt(2) * (1 / 20) / (8.0 / 2 * 0.45)
    assert spread(8.0) == pytest.approx(expected, rel=0.2)
    assert spread(2.0) > 2.5 * spread(8.0)


def test_schema_rejects_extra_fields() -> None:
    with pytest.raises(ValidationError):
        SiteStats.model_validate({"withheld": True, "studies": "withheld", "epsilon": 1.0,
                                  "site_name": "St Elsewhere"})
