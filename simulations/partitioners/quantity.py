"""The ``quantity`` partitioner: site sizes follow a power law (quantity skew)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from client.data import StudyRecord
from simulations.partitioners.base import Partition, group_by_subject, register_partitioner, sites_from_groups
from simulations.partitioners.config import QuantityPartitionConfig
from simulations.partitioners.flower_bridge import run_flower_partitioner, seeded_order

__all__ = ["QuantityPartitioner", "power_law_sizes"]


def power_law_sizes(total: int, *, num_sites: int, exponent: float, minimum: int) -> list[int]:
    """Site sizes summing to ``total``, proportional to ``(k + 1) ** -exponent`` above ``minimum``.

    Every site first gets ``minimum``; the remainder is shared by the power law with
    largest-remainder rounding, so sizes are non-increasing and sum exactly to ``total``.

    Raises:
        ValueError: ``total < num_sites * minimum``.
    """
    if num_sites < 1 or total < num_sites * minimum:
        raise ValueError(
            f"expected at least sites x min_subjects = {num_sites * minimum} subjects, got {total}; "
            "fix: lower [simulation] sites or [simulation.partition] min_subjects."
        )
    weights = (np.arange(1, num_sites + 1, dtype=np.float64)) ** -float(exponent)
    share = (total - num_sites * minimum) * weights / weights.sum()
    sizes = np.floor(share).astype(int)
    remainder = total - num_sites * minimum - int(sizes.sum())
    # Ties go to the earlier (larger) site, which keeps the sizes non-increasing.
    for k in sorted(range(num_sites), key=lambda k: (-(share[k] - sizes[k]), k))[:remainder]:
        sizes[k] += 1
    return [int(s) + minimum for s in sizes]


@register_partitioner("quantity")
class QuantityPartitioner:
    """Quantity skew: subjects shuffled with the seed, then cut into power-law sized sites
    (Flower Datasets' ``SizePartitioner``). Site 0 is the largest."""

    name = "quantity"

    def __init__(self, *, cfg: QuantityPartitionConfig, **_: object) -> None:
        self.cfg = cfg

    def split(self, studies: Sequence[StudyRecord], *, num_sites: int, seed: int) -> Partition:
        """Partition ``studies`` into ``num_sites`` sites of power-law sizes.

        Raises:
            ValueError: fewer subjects than ``num_sites * min_subjects``.
        """
        from flwr_datasets.partitioner import SizePartitioner

        groups = group_by_subject(studies)
        sizes = power_law_sizes(len(groups), num_sites=num_sites, exponent=self.cfg.exponent,
                                minimum=self.cfg.min_subjects)
        order = seeded_order(list(groups), seed=seed, salt=0x0A7)
        assignment = run_flower_partitioner(SizePartitioner(partition_sizes=sizes), {"subject": order})
        return Partition(sites=sites_from_groups(groups, [sorted(a) for a in assignment]))
