"""Counts that leave a site: only the lower bound of a coarse bucket, never the count.

The number of examples a site trained on (Flower's ``num-examples``, FedAvg's weight) and
the number of studies a task had to skip are functions of the site's study count; sent
exactly, a run with a large batch size would reveal the exact count that the statistics
release only gives as a bucket. A site sends :func:`coarse_count` of each instead, and the
outgoing guard lets nothing else through.

FedAvg weighting with coarse counts: every site trains the same number of local steps, so
a site with at least ``batch_size`` studies uses ``steps x batch_size`` examples, the same
as every other such site; exact counts would change weights only for sites smaller than
one batch. Coarse counts keep those weights within a factor of five of the exact ones
(bucket edges 1, 10, 50, 200, 1000) and equal for all sites in a bucket.
"""

from __future__ import annotations

#: Lower bounds of the buckets; a site reports one of these.
COARSE_COUNTS: tuple[int, ...] = (0, 1, 10, 50, 200, 1000)


def coarse_count(n: int) -> int:
    """The lower bound of ``n``'s bucket: 0, 1 (1-9), 10 (10-49), 50, 200 or 1000 (1000+)."""
    if n < 0:
        raise ValueError(f"a count cannot be negative, got {n}")
    return max(b for b in COARSE_COUNTS if b <= n)
