"""The FeTS 2022 layout: BraTS-style case folders plus the CSVs that name each case's institution."""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

from client.data.adapter import DataProblem, StudyRecord, register_adapter
from client.data.brats import BratsFolderAdapter, attach_fets_sites
from client.data.fets_partitions import NATURAL_FILE, SPLIT_FILE, find_partitioning

__all__ = ["Fets2022Adapter"]

_CASE_DIR = re.compile(r"^FeTS2022_\d+$", re.IGNORECASE)


@register_adapter("fets2022")
class Fets2022Adapter(BratsFolderAdapter):
    """MICCAI_FeTS2022_TrainingData: BraTS 2021 cases renamed ``FeTS2022_<number>``.

    ``site`` is the case's institution from ``partitioning_1.csv`` (23 institutions; the
    CSV has CRLF line endings), and ``meta["partition_2"]`` its partition in
    ``partitioning_2.csv`` (the five largest institutions split in three). A case the CSV
    does not list, a bad CSV row or a missing CSV is reported; the cases still load.
    Labels are BraTS 2021's, already canonical.
    """

    name = "fets2022"
    layout_hint: ClassVar[str] = (
        "MICCAI_FeTS2022_TrainingData/FeTS2022_00000/FeTS2022_00000_{flair,t1,t1ce,t2,seg}"
        ".nii.gz with partitioning_1.csv (and partitioning_2.csv) beside the case folders"
    )
    label_scheme: ClassVar[str] = (
        "BraTS 2021 numbering (canonical): 1 necrotic core, 2 edema, 4 enhancing"
    )

    @classmethod
    def detect(cls, root: Path) -> bool:
        """True for a folder of ``FeTS2022_*`` cases, or one with the partitioning CSVs that
        is not a BraTS 2021 folder (BraTS 2021 reads the same CSVs as ``brats2021``)."""
        if any(p.is_dir() and _CASE_DIR.match(p.name) for p in root.iterdir()):
            return True
        has_csv = (root / NATURAL_FILE).is_file() or (root / SPLIT_FILE).is_file()
        return has_csv and not BratsFolderAdapter.detect(root)

    def _with_sites(
        self, root: Path, studies: list[StudyRecord], problems: list[DataProblem]
    ) -> list[StudyRecord]:
        natural = find_partitioning(root, NATURAL_FILE)
        if natural is None:
            problems.append(DataProblem(
                path=root / NATURAL_FILE,
                problem="expected FeTS 2022's partitioning_1.csv beside the case folders, got "
                "none: the cases' institutions are unknown.",
                fix="copy partitioning_1.csv (and partitioning_2.csv) from the FeTS 2022 archive "
                "into this folder.",
            ))
            return studies
        records = attach_fets_sites(studies, natural=natural, split=find_partitioning(root, SPLIT_FILE),
                                    problems=problems)
        for record in records:
            if record.site is None:
                problems.append(DataProblem(
                    path=root / record.study_id,
                    problem=f"expected case {record.study_id} in {natural.name}, got no row: its "
                    "institution is unknown (the case loads without a site).",
                    fix=f"add a '<partition>,{record.study_id}' row or use the original CSV.",
                ))
        return records
