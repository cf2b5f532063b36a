"""A partition on disk: ``partition.json`` (sites x subjects x modalities) and one study list per site."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from client.data import STUDY_LIST_FILE, DataProblem, write_study_list
from shared.modalities import CANONICAL_MODALITIES
from simulations.partitioners.base import Partition, VirtualSite, safe_name

__all__ = ["PARTITION_DIR", "PARTITION_FILE", "partition_summary", "partition_table", "write_partition"]

PARTITION_FILE = "partition.json"
#: Folder of the run holding one folder per virtual site, each with its fedmm-studies.json.
PARTITION_DIR = "partition"
_SCHEMA = "fedmm.partition/1"


def _modalities(site: VirtualSite) -> dict[str, int]:
    counts = Counter(m for r in site.studies for m in r.images)
    rank = {m: i for i, m in enumerate(CANONICAL_MODALITIES)}
    return {m: counts[m] for m in sorted(counts, key=lambda m: (rank.get(m, 99), m))}


def site_folders(partition: Partition) -> list[str]:
    """Folder names of the sites, ``site-<k>-<name>`` (unique, filesystem-safe, ordered)."""
    return [f"site-{k:02d}-{safe_name(s.name)}" if not s.name.startswith("site-") else safe_name(s.name)
            for k, s in enumerate(partition.sites)]


def partition_summary(
    partition: Partition, *, layout: str, data_root: Path, partitioner: dict[str, Any], seed: int,
    problems: Sequence[DataProblem] = (),
) -> dict[str, Any]:
    """The ``partition.json`` document (schema ``fedmm.partition/1``, docs/datasets.md)."""
    sites = []
    for folder, site in zip(site_folders(partition), partition.sites, strict=True):
        subjects: dict[str, dict[str, list[str]]] = {}
        for record in site.studies:
            subjects.setdefault(record.subject, {})[record.study_id] = list(_modalities(
                VirtualSite(name="", studies=(record,))))
        sites.append({
            "name": site.name, "folder": folder, "sources": list(site.sources),
            "profile": site.profile, "dropped_modalities": list(site.dropped_modalities),
            "num_subjects": len(subjects), "num_studies": len(site.studies),
            "labelled_studies": sum(r.label is not None for r in site.studies),
            "modalities": _modalities(site), "subjects": subjects,
        })
    return {
        "schema": _SCHEMA, "layout": layout, "data_root": str(data_root), "seed": seed,
        "partitioner": partitioner, "sites": sites, "left_out_subjects": list(partition.left_out),
        "notes": list(partition.notes),
        "problems": [{"path": str(p.path), "problem": p.problem, "fix": p.fix} for p in problems],
    }


def write_partition(
    partition: Partition, *, out_dir: Path, layout: str, data_root: Path, partitioner: dict[str, Any],
    seed: int, problems: Sequence[DataProblem] = (),
) -> tuple[Path, list[str]]:
    """Write ``out_dir/partition.json`` and ``out_dir/partition/<site>/fedmm-studies.json``.

    Returns:
        the folder of site folders and the site folder names, in site order: what
        ``simulate`` hands to the virtual sites (each loads exactly its listed studies).
    """
    root = Path(out_dir) / PARTITION_DIR
    folders = site_folders(partition)
    for folder, site in zip(folders, partition.sites, strict=True):
        write_study_list(root / folder / STUDY_LIST_FILE, site.studies, layout=layout, site=site.name)
    summary = partition_summary(partition, layout=layout, data_root=data_root, partitioner=partitioner,
                                seed=seed, problems=problems)
    (Path(out_dir) / PARTITION_FILE).write_text(json.dumps(summary, indent=1))
    return root, folders


def partition_table(partition: Partition, *, title: str) -> Table:
    """Sites x (subjects, studies, labelled, studies per modality) for the console."""
    modalities = list(dict.fromkeys(m for s in partition.sites for m in _modalities(s)))
    table = Table(title=title, title_justify="left")
    for column in ("site", "from", "subjects", "studies", "labelled", *modalities):
        table.add_column(column, justify="left" if column in ("site", "from") else "right")
    for site in partition.sites:
        counts = _modalities(site)
        origin = ", ".join(site.sources[:3]) + (" ..." if len(site.sources) > 3 else "")
        origin = origin or site.profile or ("lacks " + ",".join(site.dropped_modalities)
                                            if site.dropped_modalities else "")
        table.add_row(site.name, origin, str(len(site.subjects)), str(len(site.studies)),
                      str(sum(r.label is not None for r in site.studies)),
                      *(str(counts.get(m, 0)) for m in modalities))
    return table
