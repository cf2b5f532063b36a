"""A generic layout for any other dataset: a CSV naming site, subject, modality and file per row."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from client.data.adapter import DataProblem, Discovery, StudyRecord, register_adapter
from client.data.csv_table import read_csv
from client.data.scan import duplicate, modality_or_problem

__all__ = ["MANIFEST_FILE", "ManifestAdapter"]

MANIFEST_FILE = "manifest.csv"
_REQUIRED = ("site", "subject", "modality", "path")
#: Optional columns with a meaning; every other column is a covariate (``meta``).
_KNOWN = (*_REQUIRED, "label", "study", "channel")
_EXPECTED = (
    "a CSV (manifest.csv in the folder, or the CSV file itself) with the header "
    "site,subject,modality,path[,label][,study][,channel][,<covariates>...], one row per "
    "volume; relative paths are relative to the CSV's folder"
)


@dataclass
class _Draft:
    """One study's rows, gathered."""

    subject: str
    images: dict[str, Path] = field(default_factory=dict)
    channels: dict[str, int] = field(default_factory=dict)
    label: Path | None = None
    meta: dict[str, str] = field(default_factory=dict)


@register_adapter("manifest")
class ManifestAdapter:
    """Any dataset described by a CSV: ``site,subject,modality,path[,label]``.

    Rows of one ``study`` (default: the subject) form one study; ``modality`` is any
    alias of a canonical name; ``path`` is a NIfTI file (or DICOM series folder),
    relative to the CSV's folder unless absolute; ``label`` (on any row of the study) is
    its segmentation, which must already use the canonical numbering (0, 1 necrotic core,
    2 edema, 4 enhancing) or a documented scheme of its own; ``channel`` picks a channel
    of a 4D file. Other columns (``grade``, ``scanner``, ...) become ``meta`` covariates.
    A bad row is reported with its line number; the other rows still load.
    """

    name = "manifest"
    label_scheme: ClassVar[str] = "as written (expected canonical: 1 necrotic core, 2 edema, 4 enhancing)"

    @classmethod
    def detect(cls, root: Path) -> bool:
        """True for a CSV file or a folder holding ``manifest.csv``."""
        return (root.is_file() and root.suffix.lower() == ".csv") or (root / MANIFEST_FILE).is_file()

    def discover(self, root: Path) -> Discovery:
        """Read the manifest's rows into studies (no voxel is read).

        Raises:
            ValueError: no manifest, a header without the required columns, or no usable row.
        """
        root = Path(root)
        csv_path = root if root.is_file() else root / MANIFEST_FILE
        if not csv_path.is_file():
            what = "a folder without manifest.csv" if root.is_dir() else "nothing"
            raise ValueError(
                f"Expected {_EXPECTED}; got {what} at {root}. Fix: write the manifest, or pass "
                "the CSV file itself."
            )
        header, rows = read_csv(csv_path)
        missing = [c for c in _REQUIRED if c not in header]
        if missing:
            raise ValueError(
                f"Expected the columns {list(_REQUIRED)} in {csv_path}, got {header} (missing "
                f"{missing}). Fix: add them to the header row."
            )
        problems: list[DataProblem] = []
        studies: dict[tuple[str, str], _Draft] = {}
        for line, row in rows:
            self._row(csv_path, line=line, row=row, studies=studies, problems=problems)
        records = [
            StudyRecord(study_id=study_id, subject_id=draft.subject, site=site, images=draft.images,
                        channels=draft.channels, label=draft.label, meta=draft.meta)
            for (site, study_id), draft in studies.items() if draft.images
        ]
        if not records:
            details = "".join(f"\n  - {p}" for p in problems[:10])
            raise ValueError(
                f"Expected at least one usable row in {csv_path}, got none of {len(rows)}. Fix: "
                f"correct the rows listed below.{details}"
            )
        return Discovery(studies=tuple(records), problems=tuple(problems))

    @staticmethod
    def _row(
        csv_path: Path, *, line: int, row: Mapping[str, str],
        studies: dict[tuple[str, str], _Draft], problems: list[DataProblem],
    ) -> None:
        where = f"line {line}:"
        empty = [c for c in _REQUIRED if not row.get(c)]
        if empty:
            problems.append(DataProblem(path=csv_path, problem=f"{where} expected values for {empty}, "
                                        "got empty cells.", fix="fill them in or delete the row."))
            return
        study_id = row.get("study") or row["subject"]
        draft = studies.setdefault((row["site"], study_id), _Draft(subject=row["subject"]))
        for column, value in row.items():
            if column not in _KNOWN and value and column not in draft.meta:
                draft.meta[column] = value
        if row.get("label"):
            label = _resolve(csv_path, row["label"])
            if draft.label is not None and draft.label != label:
                problems.append(DataProblem(path=label, problem=f"{where} expected one label per "
                                            f"study, got a second one for {study_id!r}.",
                                            fix="give each study one label file."))
            elif not label.exists():
                problems.append(DataProblem(path=label, problem=f"{where} expected the label file, got "
                                            "nothing there.", fix="fix the path or the file."))
            else:
                draft.label = label
        path = _resolve(csv_path, row["path"])
        if not path.exists():
            problems.append(DataProblem(path=path, problem=f"{where} expected a volume, got nothing "
                                        "there.", fix="fix the path in the manifest or restore the file."))
            return
        modality = modality_or_problem(row["modality"], path, problems=problems)
        if modality is None:
            return
        if modality in draft.images:
            problems.append(duplicate(path, modality, kept=draft.images[modality]))
            return
        if row.get("channel"):
            if not row["channel"].isdigit():
                problems.append(DataProblem(path=csv_path, problem=f"{where} expected a channel number, "
                                            f"got {row['channel']!r}.", fix="write 0, 1, ..."))
                return
            draft.channels[modality] = int(row["channel"])
        draft.images[modality] = path


def _resolve(csv_path: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else csv_path.parent / path
