"""Partitioners: one dataset split into virtual sites (natural, dirichlet, quantity, ...)."""

from __future__ import annotations

# Importing each partitioner's module registers it (one file per partitioner).
from simulations.partitioners import (  # noqa: F401
    dirichlet,
    modality_missing,
    natural,
    quantity,
    scanner_shift,
)
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
