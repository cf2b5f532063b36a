"""The server's pool: anonymous, shuffled, withheld sites counted but contributing nothing."""

from __future__ import annotations

import random

from server.stats_pool import pool_site_stats
from shared.stats_schema import ModalityStats, SiteStats, StatsPool

H = (0.25, 0.25, 0.25, 0.25)


def release(mean: float, mods=("t1", "t2")) -> SiteStats:
    return SiteStats(withheld=False, studies="10-49", epsilon=8.0,
                     modalities={m: ModalityStats(mean=mean, std=0.1, histogram=H) for m in mods})


def test_pool_counts_and_merges() -> None:
    withheld = SiteStats(withheld=True, studies="withheld", epsilon=8.0)
    pool = pool_site_stats([release(0.1), release(0.2, mods=("t1",)), withheld],
                           rng=random.Random(0))
    assert pool.contributors == 2 and pool.withheld == 1
    assert sorted(e.mean for e in pool.targets("t1")) == [0.1, 0.2]
    assert [e.mean for e in pool.targets("t2")] == [0.1]
    assert pool.targets("flair") == ()


def test_pool_order_does_not_follow_arrival_order() -> None:
    releases = [release(i / 20) for i in range(10)]
    orders = {tuple(e.mean for e in pool_site_stats(releases, rng=random.Random(s)).targets("t1"))
              for s in range(5)}
    assert len(orders) > 1


def test_pool_keeps_every_releases_epsilon_without_ids() -> None:
    releases = [release(0.1), SiteStats(withheld=True, studies="withheld", epsilon=2.0),
                SiteStats(withheld=False, studies="<10", epsilon=1.0,
                          modalities={"t1": ModalityStats(mean=0.3, std=0.1, histogram=H)})]
    pool = pool_site_stats(releases, rng=random.Random(0))
    assert pool.release_epsilons == (1.0, 2.0, 8.0)
    assert StatsPool.from_json(pool.to_json()) == pool  # what the checkpoint keeps


def test_model_card_reports_each_release_and_the_total() -> None:
    from server.protocol import statistics_privacy_summary

    pool = pool_site_stats([release(0.1), release(0.2)], rng=random.Random(0))
    summary = statistics_privacy_summary(pool)
    assert summary["unit"] == "patient" and summary["release_epsilons"] == [8.0, 8.0]
    assert summary["max_epsilon"] == 8.0 and summary["total_epsilon"] == 16.0
    assert statistics_privacy_summary(None)["release_epsilons"] == []
