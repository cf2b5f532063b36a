"""The release mechanism: a plan fixed by settings, OpenDP noise, free post-processing."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from client.dp_mechanisms import HIST_UNITS, histogram_rows
from client.patient_contributions import ModalityColumns
from client.privacy import (
    FALSE_RELEASE_PROBABILITY,
    FIELD_SHARES,
    ModalityDraw,
    ReleaseDraw,
    count_margin,
    draw_release,
    plan_release,
    release_chance,
    release_threshold,
    site_stats_from,
)
from shared.stats_schema import SiteStats

MODS = ("t1", "t2")


def columns(n: int, *, mean: float = 0.4, std: float = 0.15, bins: int = 4) -> ModalityColumns:
    return ModalityColumns(means=np.full(n, mean), stds=np.full(n, std),
                           histograms=np.full((n, bins), 1.0 / bins))


def test_the_plan_splits_epsilon_by_requested_modalities_and_fields_only() -> None:
    plan = plan_release(modalities=MODS, bins=4, epsilon=2.0)
    assert set(plan.mechanisms) == {(m, f) for m in MODS for f in FIELD_SHARES}
    for (_, field), mech in plan.mechanisms.items():
        assert mech.epsilon == pytest.approx(2.0 / len(MODS) * FIELD_SHARES[field], rel=1e-6)
        assert mech.epsilon <= 2.0 / len(MODS) * FIELD_SHARES[field]
    assert plan.spent <= 2.0 and plan.spent == pytest.approx(2.0, rel=1e-6)
    # noise scales are sensitivity / epsilon share, for one patient added or removed
    share = 2.0 / len(MODS)
    assert plan.mechanisms[("t1", "count")].scale == pytest.approx(1 / (share * 0.25), rel=1e-3)
    assert plan.mechanisms[("t1", "mean")].scale == pytest.approx(1 / (share * 0.30), rel=1e-3)
    assert plan.mechanisms[("t1", "std")].scale == pytest.approx(0.5 / (share * 0.25), rel=1e-3)
    assert plan.mechanisms[("t1", "histogram")].scale == pytest.approx(
        HIST_UNITS / (share * 0.20), rel=1e-3)
    assert plan_release(modalities=("t2", "t1"), bins=4, epsilon=2.0).mechanisms.keys() == \
        plan.mechanisms.keys()


def test_every_planned_modality_is_drawn_even_when_the_site_lacks_it() -> None:
    plan = plan_release(modalities=MODS, bins=4, epsilon=2.0)
    draw = draw_release({"t1": columns(30), "t2": columns(0)}, plan)
    assert set(draw.modalities) == set(MODS) and draw.epsilon == 2.0
    with pytest.raises(ValueError, match="missing"):
        draw_release({"t1": columns(30)}, plan)


def test_noise_does_not_depend_on_the_true_count() -> None:
    plan = plan_release(modalities=("t1",), bins=4, epsilon=1.0)

    def count_noise(n: int) -> np.ndarray:
        return np.array([draw_release({"t1": columns(n)}, plan).modalities["t1"].count - n
                         for _ in range(400)])

    small, large = count_noise(3), count_noise(300)
    scale = plan.mechanisms[("t1", "count")].scale
    for noise in (small, large):  # discrete Laplace(b): sd close to sqrt(2) b
        assert np.std(noise) == pytest.approx(math.sqrt(2) * scale, rel=0.2)
    assert abs(np.mean(small) - np.mean(large)) < 4 * scale / math.sqrt(200)


def test_count_margin_is_the_noise_quantile_it_claims() -> None:
    for scale in (0.01, 0.5, 2.0, 8.0, 40.0):
        t = count_margin(scale)
        a = math.exp(-1 / scale)
        assert a**t / (1 + a) <= FALSE_RELEASE_PROBABILITY
        assert t == 1 or a ** (t - 1) / (1 + a) > FALSE_RELEASE_PROBABILITY
    assert release_threshold(5, 0.01) == 5  # with (almost) no noise the rule is "at least k"


def test_a_modality_no_patient_has_is_rarely_released() -> None:
    plan = plan_release(modalities=MODS, bins=4, epsilon=2.0)
    releases = [site_stats_from(draw_release({"t1": columns(200), "t2": columns(0)}, plan),
                                min_patients=5) for _ in range(400)]
    assert all("t1" in r.modalities for r in releases)
    chance = sum("t2" in r.modalities for r in releases) / len(releases)
    assert chance <= FALSE_RELEASE_PROBABILITY + 3 * math.sqrt(0.05 * 0.95 / 400)
    assert release_chance(0, min_patients=5, scale=plan.mechanisms[("t2", "count")].scale) < 0.05


def test_release_chance_matches_draws() -> None:
    plan = plan_release(modalities=("t1",), bins=4, epsilon=2.0)
    scale = plan.mechanisms[("t1", "count")].scale
    n = release_threshold(5, scale) - 1
    seen = np.mean([not site_stats_from(draw_release({"t1": columns(n)}, plan), min_patients=5)
                    .withheld for _ in range(600)])
    assert seen == pytest.approx(release_chance(n, min_patients=5, scale=scale), abs=0.07)


def draw_of(count: int, mean_sum: float, std_sum: float, hist: tuple[int, ...],
            scale: float = 0.01) -> ReleaseDraw:
    return ReleaseDraw(epsilon=3.0, modalities={"t1": ModalityDraw(
        count=count, count_scale=scale, mean_sum=mean_sum, std_sum=std_sum, histogram=hist)})


def test_post_processing_keeps_the_pool_usable_whatever_the_noise() -> None:
    stats = site_stats_from(draw_of(12, -4.0, -1.0, (-5, -1, -7, -2)), min_patients=5)
    t1 = stats.modalities["t1"]
    assert t1.mean == 0.0 and t1.std > 0 and sum(t1.histogram) == pytest.approx(1.0)
    stats = site_stats_from(draw_of(12, 40.0, 30.0, (100, -50, 0, 300)), min_patients=5)
    t1 = stats.modalities["t1"]
    assert t1.mean == 1.0 and t1.std == 0.5 and t1.histogram == (0.25, 0.0, 0.0, 0.75)
    stats = site_stats_from(draw_of(20, 8.0, 3.0, (1, 1, 1, 1)), min_patients=5)
    assert stats.modalities["t1"].mean == pytest.approx(0.4) and stats.studies == "10-49"
    assert stats.epsilon == 3.0


def test_k_and_the_bucket_come_from_the_noisy_count() -> None:
    draw = draw_of(7, 2.0, 1.0, (1, 1, 1, 1))
    assert site_stats_from(draw, min_patients=8).withheld
    released = site_stats_from(draw, min_patients=7)
    assert not released.withheld and released.studies == "<10"
    negative = draw_of(-3, 2.0, 1.0, (1, 1, 1, 1))
    assert site_stats_from(negative, min_patients=1) == SiteStats(
        withheld=True, studies="withheld", epsilon=3.0)


def test_release_has_no_identifiers_and_no_counts() -> None:
    plan = plan_release(modalities=MODS, bins=4, epsilon=50.0)
    rel = site_stats_from(draw_release({"t1": columns(37), "t2": columns(37)}, plan),
                          min_patients=5)

    def scalars(v: object) -> list[object]:
        if isinstance(v, dict):
            return [x for y in v.values() for x in scalars(y)]
        if isinstance(v, list):
            return [x for y in v for x in scalars(y)]
        return [v]

    values = scalars(json.loads(rel.to_json()))
    assert not [v for v in values if isinstance(v, int) and not isinstance(v, bool)], "no counts"
    assert rel.studies == "10-49"
    assert set(SiteStats.model_fields) == {"schema_id", "withheld", "studies", "epsilon", "modalities"}


def test_histogram_rows_bound_each_patient_to_the_unit_budget() -> None:
    hists = np.array([[0.3333333333, 0.3333333333, 0.3333333334, 0.0], [0.0, 0.0, 0.0, 1.0]])
    rows = histogram_rows(hists)
    assert rows.dtype == np.int32 and len(rows) <= 2 * HIST_UNITS
    assert np.bincount(rows, minlength=4)[3] == HIST_UNITS
    assert histogram_rows(np.zeros((0, 4))).size == 0


def test_utility_at_the_default_epsilon_is_what_docs_privacy_md_says() -> None:
    """docs/privacy.md: at epsilon 2 with four modalities and 200 patients, a released mean
    is off by about 0.06 and a std by about 0.03 (root mean square)."""
    mods = ("t1", "t1ce", "t2", "flair")
    plan = plan_release(modalities=mods, bins=16, epsilon=2.0)
    cols = {m: columns(200, bins=16) for m in mods}
    errors = []
    for _ in range(40):
        rel = site_stats_from(draw_release(cols, plan), min_patients=5)
        errors += [(s.mean - 0.4, s.std - 0.15) for s in rel.modalities.values()]
    rmse = np.sqrt(np.mean(np.square(errors), axis=0))
    assert rmse[0] < 0.09 and rmse[1] < 0.05


def test_the_default_release_rule_is_what_docs_privacy_md_says() -> None:
    """docs/privacy.md: with the defaults (epsilon 2, four modalities, k 5) a modality is
    released half the time at 23 patients and 95 % of the time at 41, and with fewer than
    k patients at most 5 % of the time; at epsilon 8, 86 % of the time at 12 patients."""
    from shared.config import DataConfig, PrivacyConfig

    defaults, data = PrivacyConfig(), DataConfig()
    assert (defaults.epsilon, defaults.min_studies, len(data.modalities)) == (2.0, 5, 4)

    def chance(n: int, epsilon: float = 2.0) -> float:
        plan = plan_release(modalities=data.modalities, bins=data.hist_bins, epsilon=epsilon)
        scale = plan.mechanisms[(data.modalities[0], "count")].scale
        return release_chance(n, min_patients=defaults.min_studies, scale=scale)

    assert chance(22) < 0.5 <= chance(23) and chance(40) < 0.95 <= chance(41)
    assert max(chance(n) for n in range(defaults.min_studies)) <= FALSE_RELEASE_PROBABILITY
    assert chance(12, epsilon=8.0) == pytest.approx(0.86, abs=0.005)
