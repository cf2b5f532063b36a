"""The ``modality_missing`` partitioner: an IID split where each site lacks some modalities."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from client.data import StudyRecord
from shared.modalities import CANONICAL_MODALITIES
from simulations.partitioners.base import (
    Partition,
    VirtualSite,
    group_by_subject,
    register_partitioner,
    sites_from_groups,
)
from simulations.partitioners.config import ModalityMissingPartitionConfig
from simulations.partitioners.flower_bridge import iid_split

__all__ = ["ModalityMissingPartitioner", "without_modalities"]


def without_modalities(record: StudyRecord, dropped: Sequence[str]) -> StudyRecord | None:
    """``record`` with the ``dropped`` modalities removed; None when nothing is left."""
    images = {m: p for m, p in record.images.items() if m not in dropped}
    if not images:
        return None
    channels = {m: c for m, c in record.channels.items() if m in images}
    return dataclasses.replace(record, images=images, channels=channels)


@register_partitioner("modality_missing")
class ModalityMissingPartitioner:
    """IID split (Flower Datasets' ``IidPartitioner``), then site k loses the modalities
    ``missing[k mod len(missing)]``, or ``drop`` modalities drawn with the seed, never
    leaving a site fewer than ``keep_at_least`` of the dataset's modalities. The records
    of a site simply do not list the dropped files, so the pipeline treats them as absent
    (zeros, ``present = 0``), exactly like a hospital that never acquired them.
    """

    name = "modality_missing"

    def __init__(self, *, cfg: ModalityMissingPartitionConfig, **_: object) -> None:
        self.cfg = cfg

    def split(self, studies: Sequence[StudyRecord], *, num_sites: int, seed: int) -> Partition:
        """Partition ``studies`` into ``num_sites`` sites with missing modalities.

        Raises:
            ValueError: fewer subjects than sites, or ``missing`` would leave a site fewer
                than ``keep_at_least`` modalities.
        """
        groups = group_by_subject(studies)
        rank = {m: i for i, m in enumerate(CANONICAL_MODALITIES)}
        available = sorted({m for r in studies for m in r.images}, key=lambda m: rank.get(m, 99))
        base = sites_from_groups(groups, iid_split(list(groups), num_sites=num_sites, seed=seed))
        rng = np.random.default_rng([seed, 0x3155])
        sites = []
        for k, site in enumerate(base):
            if self.cfg.missing is not None:
                dropped = [m for m in self.cfg.missing[k % len(self.cfg.missing)] if m in available]
                if len(available) - len(dropped) < self.cfg.keep_at_least:
                    raise ValueError(
                        f"expected site {k} to keep >= {self.cfg.keep_at_least} of the dataset's "
                        f"modalities {available}, got missing={list(dropped)}; fix: drop fewer "
                        "modalities or lower keep_at_least."
                    )
            else:
                count = max(0, min(self.cfg.drop, len(available) - self.cfg.keep_at_least))
                dropped = sorted(rng.choice(available, size=count, replace=False).tolist(),
                                 key=lambda m: rank.get(m, 99))
            records = [r for r in (without_modalities(s, dropped) for s in site.studies) if r is not None]
            sites.append(VirtualSite(name=site.name, studies=tuple(records),
                                     dropped_modalities=tuple(dropped)))
        return Partition(sites=tuple(sites))
