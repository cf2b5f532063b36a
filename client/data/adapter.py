"""Dataset adapters: how a site's on-disk layout becomes study records, and their registry."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

from shared.registry import Registry

__all__ = [
    "DataProblem",
    "DataProblemError",
    "DatasetAdapter",
    "Discovery",
    "StudyRecord",
    "available_adapters",
    "get_adapter",
    "register_adapter",
]


@dataclass(frozen=True)
class StudyRecord:
    """One study (patient visit) as found on disk, before anything is read.

    Attributes:
        study_id: the dataset's own identifier (e.g. ``BraTS2021_00000``); stays on the site.
        images: canonical modality name (see ``shared.modalities``) -> volume: a NIfTI file,
            a folder holding one DICOM series, or (with ``channels``) a 4D NIfTI file.
        label: the segmentation: a NIfTI file or a folder of PNG slices (one per slice of
            the reference image); None when the study has none.
        meta: covariates and facts the layout knows (e.g. ``{"grade": "HGG"}``), which
            partitioners may group or stratify by; may be empty.
        site: the institution that acquired the study, when the dataset records it.
        subject_id: the patient; several studies (visits, CT vs MR series) may share one.
            None means the study is its own subject.
        channels: modality -> index along the last axis of a 4D file (e.g. MSD's
            ``{"flair": 0, "t1": 1, ...}``); modalities not listed are 3D files.
        label_map: dataset label value -> canonical value, applied on loading (e.g. BraTS
            2023 ``{1: 1, 2: 2, 3: 4}``); a label value not listed (other than 0) makes the
            study unusable. None keeps the file's values as they are.
        grid_reference: modalities not co-registered on disk: every volume is resampled
            onto the grid of this modality (or of the first available one in the run's
            order when this one is not used). None: the volumes must already share a grid.
    """

    study_id: str
    images: Mapping[str, Path]
    label: Path | None = None
    meta: Mapping[str, str] = field(default_factory=dict)
    site: str | None = None
    subject_id: str | None = None
    channels: Mapping[str, int] = field(default_factory=dict)
    label_map: Mapping[int, int] | None = None
    grid_reference: str | None = None

    @property
    def subject(self) -> str:
        """The patient this study belongs to (``subject_id``, or the study itself)."""
        return self.subject_id if self.subject_id is not None else self.study_id


@dataclass(frozen=True)
class DataProblem:
    """Something wrong with a site's data, reported instead of crashing the site.

    Attributes:
        path: the file or folder at fault.
        problem: what was expected and what was found.
        fix: what the site operator can do about it.
    """

    path: Path
    problem: str
    fix: str

    def __str__(self) -> str:
        # One line per problem, so a log shows one warning per problem even when an
        # exception message we quote spans several lines.
        text = f"{self.path}: {self.problem} Fix: {self.fix}"
        return " ".join(text.split())


class DataProblemError(ValueError):
    """Raised by a transform when a study cannot be used; carries the DataProblem to report."""

    def __init__(self, problem: DataProblem) -> None:
        super().__init__(str(problem))
        self.problem = problem


@dataclass(frozen=True)
class Discovery:
    """What an adapter found under a site folder: usable studies and reported problems."""

    studies: tuple[StudyRecord, ...]
    problems: tuple[DataProblem, ...] = ()


@runtime_checkable
class DatasetAdapter(Protocol):
    """Turns one dataset layout on disk into study records.

    An adapter only lists files and parses names; it never reads voxels (the site's
    dataset validates each study by loading it through the transforms).
    """

    name: str

    def discover(self, root: Path) -> Discovery:
        """List the studies under ``root``.

        Raises:
            ValueError: ``root`` is missing or holds nothing in this layout; the message
                shows the expected layout, what was found and how to fix it.
        """
        ...


_A = TypeVar("_A", bound=type)

_REGISTRY = Registry("dataset layout",
                     fix="Fix: set data.layout to the layout of the site's folder.")


def register_adapter(name: str) -> Callable[[_A], _A]:
    """Class decorator adding a dataset adapter to the registry under ``name``.

    The class must be constructible without arguments and declare the same ``name``.

    Raises:
        ValueError: ``name`` is already registered, or the class declares another name.
    """
    return _REGISTRY.register(name)


def available_adapters() -> tuple[str, ...]:
    """Names of all registered dataset adapters, sorted."""
    return tuple(_REGISTRY.names())


def get_adapter(name: str) -> DatasetAdapter:
    """Return a fresh instance of the adapter registered as ``name``.

    Raises:
        ValueError: unknown name; the message lists the available ones and the closest.
    """
    adapter: DatasetAdapter = _REGISTRY.get(name)()
    return adapter
