"""The ``dirichlet`` partitioner: covariate skew with Dirichlet(alpha) proportions per value."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from client.data import StudyRecord
from simulations.partitioners.base import Partition, group_by_subject, register_partitioner, sites_from_groups
from simulations.partitioners.config import DirichletPartitionConfig
from simulations.partitioners.covariates import UNKNOWN, subject_covariates
from simulations.partitioners.flower_bridge import run_flower_partitioner, seeded_order

__all__ = ["DirichletPartitioner"]


@register_partitioner("dirichlet")
class DirichletPartitioner:
    """Non-IID split over a covariate (Hsu et al. 2019, "Measuring the effects of non-identical
    data distribution"; Yurochkin et al. 2019), via Flower Datasets' ``DirichletPartitioner``.

    For each covariate value (grade, cohort, scanner, binned tumour size, ...), the share
    of its subjects that goes to each site is drawn from Dirichlet(alpha, ..., alpha):
    alpha -> 0 gives sites that each hold few values, alpha -> infinity an IID split.
    Draws repeat until every site has ``min_subjects`` subjects (at most 10 tries).
    """

    name = "dirichlet"

    def __init__(self, *, cfg: DirichletPartitionConfig, cache_dir: Path | None = None, **_: object) -> None:
        self.cfg = cfg
        self.cache_file = None if cache_dir is None else Path(cache_dir) / "tumour_sizes.json"

    def split(self, studies: Sequence[StudyRecord], *, num_sites: int, seed: int) -> Partition:
        """Partition ``studies`` into ``num_sites`` sites.

        Raises:
            ValueError: fewer subjects than ``num_sites * min_subjects``, or no draw met
                ``min_subjects`` in 10 tries.
        """
        from flwr_datasets.partitioner import DirichletPartitioner as FlowerDirichlet

        groups = group_by_subject(studies)
        need = num_sites * self.cfg.min_subjects
        if len(groups) < need:
            raise ValueError(
                f"expected at least sites x min_subjects = {need} subjects, got {len(groups)}; "
                "fix: lower [simulation] sites or [simulation.partition] min_subjects."
            )
        values = subject_covariates(groups, self.cfg.by, bins=self.cfg.bins, cache_file=self.cache_file)
        # A seeded order (not the sorted one) so that the seed also changes who goes where
        # within a covariate value.
        subjects = seeded_order(list(groups), seed=seed, salt=0xD1)
        partitioner = FlowerDirichlet(
            num_partitions=num_sites, partition_by="covariate", alpha=float(self.cfg.alpha),
            min_partition_size=self.cfg.min_subjects, self_balancing=self.cfg.self_balancing,
            shuffle=True, seed=seed,
        )
        try:
            assignment = run_flower_partitioner(
                partitioner, {"subject": subjects, "covariate": [values[s] for s in subjects]})
        except ValueError as err:
            raise ValueError(
                f"expected a Dirichlet draw giving every one of {num_sites} sites >= "
                f"{self.cfg.min_subjects} subjects, got none in 10 tries (alpha={self.cfg.alpha}, "
                f"{len(groups)} subjects): {err} Fix: raise alpha, lower min_subjects or sites."
            ) from err
        unknown = sum(v == UNKNOWN for v in values.values())
        notes = (f"{unknown} of {len(groups)} subjects have no {self.cfg.by!r} (grouped as "
                 f"{UNKNOWN!r}).",) if unknown else ()
        return Partition(sites=sites_from_groups(groups, [sorted(a) for a in assignment]), notes=notes)
