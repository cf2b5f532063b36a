"""A site's data pipeline: dataset adapters, MONAI transforms, cached and seeded batches."""

from __future__ import annotations

# Importing each layout's module registers its adapter (one file per layout).
from client.data import (  # noqa: F401
    brats,
    brats2023,
    chaos,
    fets,
    isles,
    ixi,
    manifest,
    msd,
    ucsf,
    upenn,
)
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
from client.data.dataset import NoUsableStudyError, SiteDataset, Split, load_site_dataset, split_studies
from client.data.site_problems import PROBLEMS_FILE, no_usable_study_line, write_problem_list
from client.data.study_list import STUDY_LIST_FILE, discover_site, read_study_list, write_study_list
from client.data.transforms import (
    BATCH_KEYS,
    build_crop_transforms,
    build_deterministic_transforms,
)

__all__ = [
    "BATCH_KEYS",
    "PROBLEMS_FILE",
    "STUDY_LIST_FILE",
    "BratsFolderAdapter",
    "DataProblem",
    "DataProblemError",
    "DatasetAdapter",
    "Discovery",
    "NoUsableStudyError",
    "SiteDataset",
    "Split",
    "StudyRecord",
    "available_adapters",
    "build_crop_transforms",
    "build_deterministic_transforms",
    "discover_site",
    "get_adapter",
    "load_site_dataset",
    "no_usable_study_line",
    "read_study_list",
    "register_adapter",
    "split_studies",
    "write_problem_list",
    "write_study_list",
]
