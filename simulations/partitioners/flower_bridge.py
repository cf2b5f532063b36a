"""The bridge to Flower Datasets' partitioners: a table of subjects in, subject ids per site out."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["iid_split", "run_flower_partitioner", "seeded_order"]


def run_flower_partitioner(partitioner: Any, columns: dict[str, list[Any]]) -> list[list[str]]:
    """Apply a ``flwr_datasets`` partitioner to a one-row-per-subject table.

    Args:
        partitioner: a fresh ``flwr_datasets.partitioner.Partitioner``.
        columns: column name -> values, one per subject; must hold ``"subject"``.

    Returns:
        Per partition id, its subject ids.

    Raises:
        ValueError: Flower Datasets refused the split (message kept).
    """
    # Imported here: Hugging Face `datasets` takes seconds to import, and only partitioned
    # simulations need it.
    from datasets import Dataset, disable_progress_bars

    disable_progress_bars()
    partitioner.dataset = Dataset.from_dict(columns)
    # DirichletPartitioner warns on every resampling try (its final error says enough), and
    # NaturalIdPartitioner draws a tqdm bar on stderr for a split that takes microseconds.
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore", UserWarning)
        return [
            [str(s) for s in partitioner.load_partition(k)["subject"]]
            for k in range(partitioner.num_partitions)
        ]


def seeded_order(subjects: Sequence[str], *, seed: int, salt: int) -> list[str]:
    """``subjects`` in a permutation that depends only on the set of ids, the seed and salt."""
    ordered = sorted(subjects)
    perm = np.random.default_rng([seed, salt]).permutation(len(ordered))
    return [ordered[i] for i in perm]


def iid_split(subjects: Sequence[str], *, num_sites: int, seed: int) -> list[list[str]]:
    """Subjects shuffled with the seed, then cut into ``num_sites`` near-equal shards
    (Flower Datasets' ``IidPartitioner``).

    Raises:
        ValueError: fewer subjects than sites.
    """
    from flwr_datasets.partitioner import IidPartitioner

    if len(subjects) < num_sites:
        raise ValueError(
            f"expected at least as many subjects as sites, got {len(subjects)} subjects for "
            f"{num_sites} sites; fix: lower [simulation] sites."
        )
    order = seeded_order(subjects, seed=seed, salt=0x11D)
    return run_flower_partitioner(IidPartitioner(num_partitions=num_sites), {"subject": order})
