"""Merges the sites' anonymized SiteStats into one shuffled, anonymous StatsPool."""

from __future__ import annotations

import random
from collections.abc import Sequence

from shared.stats_schema import ModalityStats, SiteStats, StatsPool


def pool_site_stats(releases: Sequence[SiteStats], *, rng: random.Random) -> StatsPool:
    """Pool per modality and shuffle, so an entry cannot be traced to the node that sent it.

    Withheld releases (sites below the k-threshold) contribute nothing but are counted.
    Every release's epsilon is kept, sorted and without its node, for the model card.
    """
    per_modality: dict[str, list[ModalityStats]] = {}
    contributors = withheld = 0
    for release in releases:
        if release.withheld:
            withheld += 1
            continue
        contributors += 1
        for name, stats in release.modalities.items():
            per_modality.setdefault(name, []).append(stats)
    for entries in per_modality.values():
        rng.shuffle(entries)
    return StatsPool(
        modalities={k: tuple(v) for k, v in sorted(per_modality.items())},
        contributors=contributors,
        withheld=withheld,
        release_epsilons=tuple(sorted(r.epsilon for r in releases)),
    )
