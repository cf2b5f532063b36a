"""Dataset adapters: how a site's on-disk layout becomes study records, and their registry."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

from shared.lookup import look_up

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
        images: canonical modality name (see ``shared.modalities``) -> NIfTI file.
        label: the segmentation file, or None when the study has none.
        meta: free-form facts the layout knows (e.g. ``{"grade": "HGG"}``); may be empty.
    """

    study_id: str
    images: Mapping[str, Path]
    label: Path | None = None
    meta: Mapping[str, str] = field(default_factory=dict)


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

_REGISTRY: dict[str, type] = {}


def register_adapter(name: str) -> Callable[[_A], _A]:
    """Class decorator adding a dataset adapter to the registry under ``name``.

    The class must be constructible without arguments and declare the same ``name``.

    Raises:
        ValueError: ``name`` is already registered, or the class declares another name.
    """

    def decorator(cls: _A) -> _A:
        if name in _REGISTRY:
            raise ValueError(
                f"Dataset adapter {name!r} is already registered (by "
                f"{_REGISTRY[name].__qualname__}); pick another name for {cls.__qualname__}."
            )
        declared = getattr(cls, "name", None)
        if declared != name:
            raise ValueError(
                f"Expected {cls.__qualname__}.name == {name!r} (its registry name), "
                f"got {declared!r}; set the class attribute `name = {name!r}`."
            )
        _REGISTRY[name] = cls
        return cls

    return decorator


def available_adapters() -> tuple[str, ...]:
    """Names of all registered dataset adapters, sorted."""
    return tuple(sorted(_REGISTRY))


def get_adapter(name: str) -> DatasetAdapter:
    """Return a fresh instance of the adapter registered as ``name``.

    Raises:
        ValueError: unknown name; the message lists the available ones and the closest.
    """
    cls = look_up(name, _REGISTRY, kind="dataset layout",
                  fix="Fix: set data.layout to the layout of the site's folder.")
    adapter: DatasetAdapter = cls()
    return adapter
