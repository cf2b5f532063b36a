"""What a partitioner is and returns: subjects of one dataset dealt out to virtual sites."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from client.data import StudyRecord
from shared.registry import Registry

__all__ = [
    "Partition",
    "Partitioner",
    "VirtualSite",
    "available_partitioners",
    "build_partitioner",
    "group_by_subject",
    "register_partitioner",
    "safe_name",
    "sites_from_groups",
]


@dataclass(frozen=True)
class VirtualSite:
    """One simulated hospital.

    Attributes:
        name: shown in tables and used (sanitised) for its folder.
        studies: its studies (a subject's studies always stay together).
        sources: the real institutions it stands for (``natural``), else empty.
        profile: the scanner profile its images get (``scanner_shift``), else None.
        dropped_modalities: modalities removed from its studies (``modality_missing``).
    """

    name: str
    studies: tuple[StudyRecord, ...]
    sources: tuple[str, ...] = ()
    profile: str | None = None
    dropped_modalities: tuple[str, ...] = ()

    @property
    def subjects(self) -> tuple[str, ...]:
        """Subject ids in first-seen order."""
        return tuple(dict.fromkeys(r.subject for r in self.studies))


@dataclass(frozen=True)
class Partition:
    """The result of a partitioner: virtual sites, and subjects that went to none."""

    sites: tuple[VirtualSite, ...]
    left_out: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())


class Partitioner(Protocol):
    """Deals a dataset's subjects out to virtual sites, deterministically for a seed.

    Subjects, not studies, are the unit: every study of a patient lands on one site.
    Nothing is read from disk except what a covariate needs (``tumour_size``).
    """

    name: str

    def split(self, studies: Sequence[StudyRecord], *, num_sites: int, seed: int) -> Partition:
        """Partition ``studies`` into ``num_sites`` sites (``natural`` decides its own count).

        Raises:
            ValueError: the dataset cannot be split this way; says why and what to change.
        """
        ...


def group_by_subject(studies: Sequence[StudyRecord]) -> dict[str, list[StudyRecord]]:
    """Subject id -> its studies, subjects sorted by id (so the order does not depend on disk)."""
    groups: dict[str, list[StudyRecord]] = {}
    for record in studies:
        groups.setdefault(record.subject, []).append(record)
    return dict(sorted(groups.items()))


def sites_from_groups(
    groups: dict[str, list[StudyRecord]], assignment: Sequence[Sequence[str]], *, prefix: str = "site"
) -> tuple[VirtualSite, ...]:
    """Virtual sites ``<prefix>-<k>`` from per-site lists of subject ids."""
    return tuple(
        VirtualSite(name=f"{prefix}-{k}", studies=tuple(r for s in subjects for r in groups[s]))
        for k, subjects in enumerate(assignment)
    )


def safe_name(name: str) -> str:
    """A site name usable as a folder name."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("_") or "site"


_REGISTRY = Registry("partitioner",
                     fix="Fix: set [simulation.partition] name to a registered partitioner.")


def register_partitioner(name: str) -> Callable[[type[Any]], type[Any]]:
    """Class decorator adding a partitioner under ``name``; a duplicate name is refused."""
    return _REGISTRY.register(name)


def available_partitioners() -> list[str]:
    """Registered partitioner names, sorted."""
    return _REGISTRY.names()


def build_partitioner(cfg: Any, **context: Any) -> Partitioner:
    """Instantiate the partitioner named by ``cfg.name`` with its config (and context)."""
    partitioner: Partitioner = _REGISTRY.get(cfg.name)(cfg=cfg, **context)
    return partitioner
