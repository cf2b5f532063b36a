"""Partitioners: one dataset split into virtual sites (natural, dirichlet, quantity, ...).

The names below load on first use (PEP 562), so that reading a partition's config
(``simulations.partitioners.config``, which `simulate` validates before anything runs)
does not import the data stack (MONAI, torch) that the partitioners themselves need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the names are, for type checkers; at run time they load on first use
    from simulations.partitioners.base import (
        Partition,
        Partitioner,
        VirtualSite,
        available_partitioners,
        build_partitioner,
        register_partitioner,
    )
    from simulations.partitioners.config import (
        DirichletPartitionConfig,
        ModalityMissingPartitionConfig,
        NaturalPartitionConfig,
        PartitionConfig,
        QuantityPartitionConfig,
        ScannerShiftPartitionConfig,
    )
    from simulations.partitioners.manifest import PARTITION_FILE, partition_table, write_partition
    from simulations.partitioners.partition import DEFAULT_SITES, partition_dataset

# Importing each partitioner's module registers it (one file per partitioner).
_PARTITIONERS = ("dirichlet", "modality_missing", "natural", "quantity", "scanner_shift")
_SOURCES = {
    "simulations.partitioners.base": ("Partition", "Partitioner", "VirtualSite",
                                      "available_partitioners", "build_partitioner",
                                      "register_partitioner"),
    "simulations.partitioners.config": ("DirichletPartitionConfig",
                                        "ModalityMissingPartitionConfig",
                                        "NaturalPartitionConfig", "PartitionConfig",
                                        "QuantityPartitionConfig", "ScannerShiftPartitionConfig"),
    "simulations.partitioners.manifest": ("PARTITION_FILE", "partition_table", "write_partition"),
    "simulations.partitioners.partition": ("DEFAULT_SITES", "partition_dataset"),
}
__all__ = [
    "DEFAULT_SITES",
    "PARTITION_FILE",
    "DirichletPartitionConfig",
    "ModalityMissingPartitionConfig",
    "NaturalPartitionConfig",
    "Partition",
    "PartitionConfig",
    "Partitioner",
    "QuantityPartitionConfig",
    "ScannerShiftPartitionConfig",
    "VirtualSite",
    "available_partitioners",
    "build_partitioner",
    "partition_dataset",
    "partition_table",
    "register_partitioner",
    "write_partition",
]


def __getattr__(name: str) -> Any:
    for module, names in _SOURCES.items():
        if name in names:
            for partitioner in _PARTITIONERS:  # registered before any is looked up
                importlib.import_module(f"{__name__}.{partitioner}")
            value = getattr(importlib.import_module(module), name)
            globals()[name] = value
            return value
    if name in _PARTITIONERS:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
