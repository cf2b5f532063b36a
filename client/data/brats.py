"""The BraTS 2021 folder layout: one sub-folder per study, one NIfTI file per modality."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from client.data.adapter import DataProblem, Discovery, StudyRecord, register_adapter
from client.data.fets_partitions import (
    NATURAL_FILE,
    SPLIT_FILE,
    case_number,
    find_partitioning,
    read_partitioning,
)
from shared.modalities import canonical_modality

__all__ = ["BratsFolderAdapter"]

_LAYOUT = (
    "<root>/<study>/<study>_<modality>.nii.gz (or .nii), e.g. "
    "BraTS2021_00000/BraTS2021_00000_{flair,t1,t1ce,t2,seg}.nii.gz"
)
# The study prefix may itself hold underscores (BraTS2021_00000), so the modality is the
# text after the *last* underscore.
_FILE_RE = re.compile(r"^(?P<study>.+)_(?P<suffix>[^_]+)\.nii(?:\.gz)?$", re.IGNORECASE)
_CASE_DIR = re.compile(r"^BraTS2021_\d+$", re.IGNORECASE)
_NIFTI_RE = re.compile(r"\.nii(?:\.gz)?$", re.IGNORECASE)
_LABEL_SUFFIXES = frozenset({"seg"})


def _visible(path: Path) -> bool:
    # Hidden entries (.DS_Store, ._AppleDouble files, .cache) are never data.
    return not path.name.startswith(".")


@register_adapter("brats2021")
class BratsFolderAdapter:
    """BraTS 2021 training data as distributed (also FeTS-style per-study folders).

    Modality suffixes go through ``shared.modalities.canonical_modality`` so aliases
    (``t1n``, ``t1c``, ``t2f`` ...) are accepted; ``seg`` is the label, already in the
    canonical numbering (1 necrotic core, 2 edema, 4 enhancing). Problems with single
    files or studies are reported in ``Discovery.problems``; only a root with no study at
    all is an error.

    Sites: BraTS 2021 records no institution, but its training numbers are FeTS 2022's.
    When FeTS 2022's ``partitioning_1.csv`` lies in the root or its parent, each case gets
    ``site`` = its FeTS institution (and ``meta["partition_2"]`` from
    ``partitioning_2.csv`` when present).

    Subclasses (FeTS 2022, BraTS 2023) change the class attributes and hooks below.
    """

    name = "brats2021"
    #: The layout, as shown in error messages.
    layout_hint: ClassVar[str] = _LAYOUT
    #: A file name inside a study folder: groups ``study`` and ``suffix``.
    file_re: ClassVar[re.Pattern[str]] = _FILE_RE
    separator: ClassVar[str] = "_"
    #: The dataset's label values -> canonical ones; None when already canonical.
    label_map: ClassVar[Mapping[int, int] | None] = None
    label_scheme: ClassVar[str] = "BraTS 2021 numbering (canonical): 1 necrotic core, 2 edema, 4 enhancing"

    @classmethod
    def detect(cls, root: Path) -> bool:
        """True for a folder of ``BraTS2021_<number>`` case folders."""
        return any(p.is_dir() and _CASE_DIR.match(p.name) for p in root.iterdir())

    def discover(self, root: Path) -> Discovery:
        """List the studies under ``root`` (no voxel is read).

        Args:
            root: the site folder that directly holds the study folders.

        Raises:
            ValueError: ``root`` is missing, not a folder, or holds no usable study.
        """
        root = Path(root)
        if not root.is_dir():
            what = "a file" if root.exists() else "nothing"
            raise ValueError(
                f"Expected a site folder laid out as {self.layout_hint}; got {what} at {root}. "
                f"Fix: point data_dir at the folder that holds the study folders."
            )
        entries = sorted(p for p in root.iterdir() if _visible(p))
        problems: list[DataProblem] = []
        studies: list[StudyRecord] = []
        for entry in entries:
            if entry.is_dir():
                record = self._study(entry, problems)
                if record is not None:
                    studies.append(record)
            elif _NIFTI_RE.search(entry.name):
                problems.append(
                    DataProblem(
                        path=entry,
                        problem="expected NIfTI files inside a study folder, got one "
                        "directly in the site folder.",
                        fix=f"move it to {root}/<study>/<study>{self.separator}<modality>.nii.gz.",
                    )
                )
            # Other loose files (CSV partitionings, READMEs) are dataset metadata: ignore.
        if not studies:
            raise ValueError(self._nothing_found(root, entries, problems))
        studies = self._with_sites(root, studies, problems)
        return Discovery(studies=tuple(studies), problems=tuple(problems))

    def _with_sites(
        self, root: Path, studies: list[StudyRecord], problems: list[DataProblem]
    ) -> list[StudyRecord]:
        """Attach FeTS institutions when the partitioning CSVs are at hand (hook)."""
        natural = find_partitioning(root, NATURAL_FILE)
        if natural is None:
            return studies
        return attach_fets_sites(studies, natural=natural, split=find_partitioning(root, SPLIT_FILE),
                                 problems=problems)

    def _record(self, study_id: str, images: dict[str, Path], label: Path | None) -> StudyRecord:
        """The record of one study folder (hook: subclasses add subject, meta, labels)."""
        return StudyRecord(study_id=study_id, images=images, label=label, meta={},
                           label_map=self.label_map)

    def _study(self, folder: Path, problems: list[DataProblem]) -> StudyRecord | None:
        study_id = folder.name
        images: dict[str, Path] = {}
        label: Path | None = None
        for path in sorted(p for p in folder.iterdir() if _visible(p)):
            match = self.file_re.match(path.name)
            if path.is_dir() or match is None:
                problems.append(
                    DataProblem(
                        path=path,
                        problem=f"expected files named {study_id}{self.separator}<modality>.nii.gz "
                        f"in a study folder, got {path.name!r}.",
                        fix="rename it to the pattern or move it out of the study folder.",
                    )
                )
                continue
            if match["study"] != study_id:
                problems.append(
                    DataProblem(
                        path=path,
                        problem=f"expected a file of study {study_id!r} (its folder), got "
                        f"one named for {match['study']!r}.",
                        fix=f"move it to {folder.parent / match['study']} or rename it.",
                    )
                )
                continue
            suffix = match["suffix"].lower()
            if suffix in _LABEL_SUFFIXES:
                if label is not None:
                    problems.append(_duplicate(path, "label", label))
                else:
                    label = path
                continue
            try:
                modality = canonical_modality(suffix)
            except ValueError as err:
                problems.append(
                    DataProblem(
                        path=path,
                        problem=f"unknown modality suffix {match['suffix']!r}: {err}",
                        fix="rename the file with a known modality name or remove it.",
                    )
                )
                continue
            if modality in images:
                problems.append(_duplicate(path, modality, images[modality]))
                continue
            images[modality] = path
        if not images:
            problems.append(
                DataProblem(
                    path=folder,
                    problem=f"expected at least one image {study_id}{self.separator}<modality>.nii.gz in "
                    f"the study folder, got none{' (only a label)' if label else ''}.",
                    fix="add the study's images or remove the folder.",
                )
            )
            return None
        return self._record(study_id, images, label)

    def _nothing_found(self, root: Path, entries: list[Path], problems: list[DataProblem]) -> str:
        shown = ", ".join(p.name + ("/" if p.is_dir() else "") for p in entries[:5])
        more = f" and {len(entries) - 5} more" if len(entries) > 5 else ""
        found = f"{len(entries)} entries ({shown}{more})" if entries else "an empty folder"
        hint = ""
        # A common mistake: data_dir points one level too high (at the folder that holds
        # BraTS2021_Training_Data/), so every "study" is a folder of folders.
        nested = [
            d
            for d in entries
            if d.is_dir() and any(c.is_dir() and any(c.glob("*.nii*")) for c in d.iterdir())
        ]
        if nested:
            hint = f" It looks like the studies are one level down: try data_dir={nested[0]}."
        details = "".join(f"\n  - {p}" for p in problems[:10])
        return (
            f"Expected study folders laid out as {self.layout_hint} in {root}; got {found} and no "
            f"usable study.{hint} Fix: point data_dir at the folder that directly holds the "
            f"study folders, or fix the files listed below.{details}"
        )


def _duplicate(path: Path, what: str, kept: Path) -> DataProblem:
    return DataProblem(
        path=path,
        problem=f"expected one {what} file per study, got a second one (keeping {kept.name}).",
        fix="remove one of the two files.",
    )


def attach_fets_sites(
    studies: list[StudyRecord], *, natural: Path, split: Path | None, problems: list[DataProblem]
) -> list[StudyRecord]:
    """Set ``site`` (partitioning_1) and ``meta["partition_2"]`` of BraTS 2021 / FeTS cases."""
    sites, bad = read_partitioning(natural)
    problems.extend(bad)
    splits: dict[int, str] = {}
    if split is not None:
        splits, bad = read_partitioning(split)
        problems.extend(bad)
    out = []
    for record in studies:
        number = case_number(record.study_id)
        if number is None or number not in sites:
            out.append(record)
            continue
        meta = dict(record.meta)
        if number in splits:
            meta["partition_2"] = splits[number]
        out.append(dataclasses.replace(record, site=sites[number], meta=meta))
    return out
