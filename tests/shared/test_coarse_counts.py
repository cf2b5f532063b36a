"""Counts leave a site only as the lower bound of a coarse bucket."""

from __future__ import annotations

import pytest

from shared.coarse_counts import COARSE_COUNTS, coarse_count


@pytest.mark.parametrize(("n", "bucket"), [
    (0, 0), (1, 1), (9, 1), (10, 10), (49, 10), (50, 50), (199, 50), (200, 200), (999, 200),
    (1000, 1000), (123456, 1000),
])
def test_bucket_lower_bounds(n: int, bucket: int) -> None:
    assert coarse_count(n) == bucket


def test_exact_counts_cannot_be_told_apart_within_a_bucket() -> None:
    assert {coarse_count(n) for n in range(10, 50)} == {10}
    assert all(coarse_count(n) in COARSE_COUNTS for n in range(0, 3000, 7))
    with pytest.raises(ValueError, match="negative"):
        coarse_count(-1)
