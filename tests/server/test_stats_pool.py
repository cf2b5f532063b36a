"""The server's pool: anonymous, shuffled, withheld sites counted but contributing nothing."""

from __future__ import annotations

import random

from server.stats_pool import pool_site_stats
from shared.stats_schema import ModalityStats, SiteStats

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
