"""Walking a dataset folder for an adapter: root checks, visible entries, names, usual problems."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from client.data.adapter import DataProblem
from shared.modalities import canonical_modality

__all__ = [
    "NIFTI_RE",
    "duplicate",
    "modality_or_problem",
    "nifti_stem",
    "no_study_error",
    "require_folder",
    "visible",
    "visible_children",
]

NIFTI_RE = re.compile(r"\.nii(?:\.gz)?$", re.IGNORECASE)


def visible(path: Path) -> bool:
    """False for hidden entries (.DS_Store, macOS ``._`` AppleDouble files, .cache)."""
    return not path.name.startswith(".")


def visible_children(folder: Path) -> list[Path]:
    """The folder's non-hidden entries, sorted by name."""
    return sorted(p for p in folder.iterdir() if visible(p))


def nifti_stem(name: str) -> str | None:
    """``"X.nii.gz"`` / ``"X.nii"`` -> ``"X"``; None for anything else."""
    match = NIFTI_RE.search(name)
    return name[: match.start()] if match else None


def require_folder(root: Path, *, layout: str, expected: str) -> Path:
    """Return ``root`` if it is a folder, else raise the error every adapter gives.

    Raises:
        ValueError: ``root`` is missing or a file; says what was expected and the fix.
    """
    root = Path(root)
    if not root.is_dir():
        what = "a file" if root.exists() else "nothing"
        raise ValueError(
            f"Expected a {layout} dataset laid out as {expected}; got {what} at {root}. "
            f"Fix: point the path at the dataset's folder (see docs/datasets.md)."
        )
    return root


def no_study_error(
    root: Path, *, layout: str, expected: str, problems: Iterable[DataProblem] = ()
) -> ValueError:
    """The error for a root that holds nothing usable in ``layout`` (lists what it holds)."""
    entries = visible_children(root) if root.is_dir() else []
    shown = ", ".join(p.name + ("/" if p.is_dir() else "") for p in entries[:5])
    more = f" and {len(entries) - 5} more" if len(entries) > 5 else ""
    found = f"{len(entries)} entries ({shown}{more})" if entries else "an empty folder"
    details = "".join(f"\n  - {p}" for p in list(problems)[:10])
    return ValueError(
        f"Expected a {layout} dataset laid out as {expected} in {root}; got {found} and no "
        f"usable study. Fix: point the path at the dataset's own folder, or use "
        f"`fedmm data inspect {root}` to detect its layout.{details}"
    )


def duplicate(path: Path, what: str, *, kept: Path) -> DataProblem:
    """A second file for something a study has once."""
    return DataProblem(
        path=path,
        problem=f"expected one {what} file per study, got a second one (keeping {kept.name}).",
        fix="remove one of the two files.",
    )


def suffixed_niftis(folder: Path, prefix: str, *, problems: list[DataProblem]) -> list[tuple[str, Path]]:
    """``(suffix, path)`` of each NIfTI in ``folder`` named ``<prefix><suffix>.nii[.gz]``.

    Any other visible file is recorded as a problem (with the expected pattern) and skipped.
    """
    found = []
    for path in visible_children(folder):
        stem = nifti_stem(path.name)
        if stem is None or not stem.startswith(prefix):
            problems.append(DataProblem(
                path=path, problem=f"expected {prefix}<modality>.nii.gz, got {path.name!r}.",
                fix="rename it to the pattern or move it out of the case folder.",
            ))
            continue
        found.append((stem[len(prefix):], path))
    return found


def modality_or_problem(name: str, path: Path, *, problems: list[DataProblem]) -> str | None:
    """The canonical modality for ``name``, or None after recording a problem for ``path``."""
    try:
        return canonical_modality(name)
    except ValueError as err:
        problems.append(DataProblem(
            path=path, problem=f"unknown modality {name!r}: {err}",
            fix="rename the file with a known modality name or remove it.",
        ))
        return None
