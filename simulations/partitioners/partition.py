"""Run a partitioner end to end: split the studies, then render what a site's profile needs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from client.data import StudyRecord
from simulations.partitioners.base import Partition, build_partitioner

__all__ = ["DEFAULT_SITES", "partition_dataset"]

#: Virtual sites when [simulation] sites is not set (every partitioner but natural).
DEFAULT_SITES = 4


def partition_dataset(
    studies: Sequence[StudyRecord], *, cfg: Any, num_sites: int | None, seed: int, cache_dir: Path,
) -> Partition:
    """Split ``studies`` with the partitioner ``cfg`` names, deterministically for ``seed``.

    Partitioners that change images (``scanner_shift``) render them under ``cache_dir``
    (reused on the next run with the same inputs).

    Raises:
        ValueError: the split is impossible as configured; the message says what to change.
    """
    partitioner = build_partitioner(cfg, cache_dir=cache_dir)
    if cfg.name == "natural" and num_sites is not None:
        partition = partitioner.split(studies, num_sites=num_sites, seed=seed)
        if len(partition.sites) != num_sites:
            raise ValueError(
                f"expected [simulation] sites = {num_sites} to match the natural partition, got "
                f"{len(partition.sites)} institutions ({[s.name for s in partition.sites]}); fix: "
                "leave `sites` unset, or set [simulation.partition] keep_largest (and merge_rest)."
            )
    else:
        partition = partitioner.split(studies, num_sites=num_sites or DEFAULT_SITES, seed=seed)
    materialize = getattr(partitioner, "materialize", None)
    if materialize is not None:
        partition = materialize(partition, cache_dir=cache_dir, seed=seed)
    return partition
