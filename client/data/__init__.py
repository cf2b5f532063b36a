"""A site's data pipeline: dataset adapters, MONAI transforms, cached and seeded batches."""

from __future__ import annotations

from client.data import brats  # noqa: F401  (registers the "brats2021" adapter)
from client.data.adapter import (
    DataProblem,
    DataProblemError,
    DatasetAdapter,
    Discovery,
    StudyRecord,
    available_adapters,
    get_adapter,
    register_adapter,
)
from client.data.brats import BratsFolderAdapter
from client.data.dataset import SiteDataset, Split, load_site_dataset, split_studies
from client.data.transforms import (
    BATCH_KEYS,
    build_crop_transforms,
    build_deterministic_transforms,
)

__all__ = [
    "BATCH_KEYS",
    "BratsFolderAdapter",
    "DataProblem",
    "DataProblemError",
    "DatasetAdapter",
    "Discovery",
    "SiteDataset",
    "Split",
    "StudyRecord",
    "available_adapters",
    "build_crop_transforms",
    "build_deterministic_transforms",
    "get_adapter",
    "load_site_dataset",
    "register_adapter",
    "split_studies",
]
