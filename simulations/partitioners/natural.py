"""The ``natural`` partitioner: one virtual site per real institution, optionally the k largest."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from client.data import StudyRecord
from simulations.partitioners.base import (
    Partition,
    VirtualSite,
    group_by_subject,
    register_partitioner,
)
from simulations.partitioners.config import NaturalPartitionConfig
from simulations.partitioners.flower_bridge import run_flower_partitioner

__all__ = ["NaturalPartitioner", "institution_of"]

REST = "rest"


def institution_of(record: StudyRecord, by: str) -> str | None:
    """The institution a study names under ``by`` ('site' or a meta key), or None."""
    return record.site if by == "site" else record.meta.get(by)


@register_partitioner("natural")
class NaturalPartitioner:
    """Split by the dataset's own institutions (Flower Datasets' ``NaturalIdPartitioner``).

    Sites are ordered by size (largest first; ties by name). With ``keep_largest`` k (and
    ``min_subjects``), the other institutions are merged into one more site ``rest``
    (``merge_rest``) or left out. Subjects whose institution is unknown are left out.
    ``num_sites`` is ignored: the dataset decides how many sites there are.
    """

    name = "natural"

    def __init__(self, *, cfg: NaturalPartitionConfig, **_: object) -> None:
        self.cfg = cfg

    def split(self, studies: Sequence[StudyRecord], *, num_sites: int, seed: int) -> Partition:
        """Partition ``studies`` by institution.

        Raises:
            ValueError: the dataset records no institution under ``by``.
        """
        from flwr_datasets.partitioner import NaturalIdPartitioner

        groups = group_by_subject(studies)
        known = {s: institution_of(recs[0], self.cfg.by) for s, recs in groups.items()}
        left_out = tuple(s for s, inst in known.items() if inst is None)
        assigned = {s: inst for s, inst in known.items() if inst is not None}
        if not assigned:
            raise ValueError(
                f"expected studies that record their institution under {self.cfg.by!r}, got none "
                f"of {len(groups)} subjects; fix: use a layout that records sites (fets2022, "
                "ixi, manifest, brats2021 with FeTS's partitioning_1.csv) or another partitioner "
                "(dirichlet, quantity, modality_missing, scanner_shift)."
            )
        sizes = Counter(assigned.values())
        ranked = sorted(sizes, key=lambda inst: (-sizes[inst], inst))
        kept = [i for i in ranked if sizes[i] >= self.cfg.min_subjects][: self.cfg.keep_largest]
        rest = [i for i in ranked if i not in kept]
        label = {inst: inst for inst in kept} | dict.fromkeys(rest, REST)
        if not self.cfg.merge_rest:
            left_out += tuple(s for s, inst in assigned.items() if inst in rest)
            assigned = {s: inst for s, inst in assigned.items() if inst in kept}
        if not assigned:
            raise ValueError(
                f"expected at least one institution with >= {self.cfg.min_subjects} subjects, got "
                f"sizes {dict(sizes)}; fix: lower min_subjects or set merge_rest = true."
            )
        subjects = list(assigned)
        split = run_flower_partitioner(
            NaturalIdPartitioner(partition_by="institution"),
            {"subject": subjects, "institution": [label[assigned[s]] for s in subjects]},
        )
        sites = []
        for members in split:
            name = label[assigned[members[0]]]
            sources = tuple(i for i in ranked if label[i] == name and (i in kept or self.cfg.merge_rest))
            sites.append(VirtualSite(
                name=name, studies=tuple(r for s in sorted(members) for r in groups[s]), sources=sources,
            ))
        order = {name: k for k, name in enumerate([*kept, REST])}
        sites.sort(key=lambda site: order[site.name])
        return Partition(sites=tuple(sites), left_out=tuple(sorted(left_out)))
