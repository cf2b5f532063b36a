"""The BraTS 2023 layouts (GLI, MEN, SSA, PED, MET): hyphenated names, t1n/t1c/t2w/t2f, label 3."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from client.data.adapter import DataProblem, Discovery, StudyRecord, register_adapter
from client.data.brats import BratsFolderAdapter
from client.data.scan import visible_children

__all__ = ["Brats2023Adapter"]

_STUDY_RE = re.compile(r"^BraTS-(?P<cohort>[A-Za-z]+)-(?P<case>\d+)-(?P<visit>\d+)$")
_FILE_RE = re.compile(r"^(?P<study>.+)-(?P<suffix>[^-]+)\.nii(?:\.gz)?$", re.IGNORECASE)


def _holds_cases(folder: Path) -> bool:
    return any(p.is_dir() and _STUDY_RE.match(p.name) for p in visible_children(folder))


@register_adapter("brats2023")
class Brats2023Adapter(BratsFolderAdapter):
    """BraTS 2023 challenge folders, e.g. ASNR-MICCAI-BraTS2023-GLI-Challenge-TrainingData.

    The root is one challenge folder, or a folder holding several (GLI, MEN, SSA, PED,
    MET), which are then read together. ``BraTS-GLI-00000-000``: cohort ``GLI``, subject
    ``BraTS-GLI-00000``, visit ``000`` (``meta["cohort"]``, ``meta["visit"]``). No
    institution is recorded (``site`` None); the cohort is the covariate to split by.
    Labels 1 necrotic core (NETC), 2 edema (SNFH), 3 enhancing -> canonical 1, 2, 4.
    """

    name = "brats2023"
    layout_hint: ClassVar[str] = (
        "<challenge folder>/BraTS-GLI-00000-000/BraTS-GLI-00000-000-{t1n,t1c,t2w,t2f,seg}.nii.gz "
        "(GLI, MEN, SSA, PED or MET)"
    )
    file_re: ClassVar[re.Pattern[str]] = _FILE_RE
    separator: ClassVar[str] = "-"
    label_map: ClassVar[Mapping[int, int] | None] = {1: 1, 2: 2, 3: 4}
    label_scheme: ClassVar[str] = (
        "BraTS 2023: 1 necrotic core, 2 edema, 3 enhancing -> canonical 1, 2, 4"
    )

    @classmethod
    def detect(cls, root: Path) -> bool:
        """True for a challenge folder or a folder of challenge folders."""
        return _holds_cases(root) or any(
            p.is_dir() and _holds_cases(p) for p in visible_children(root)
        )

    def discover(self, root: Path) -> Discovery:
        """List the cases of one challenge folder, or of every challenge folder in ``root``.

        Raises:
            ValueError: ``root`` is missing or holds no usable case.
        """
        root = Path(root)
        if not root.is_dir() or _holds_cases(root):
            return super().discover(root)
        containers = [p for p in visible_children(root) if p.is_dir() and _holds_cases(p)]
        if not containers:
            return super().discover(root)  # raises the layout's "nothing found" error
        studies: list[StudyRecord] = []
        problems: list[DataProblem] = []
        for folder in containers:
            found = super().discover(folder)
            studies.extend(found.studies)
            problems.extend(found.problems)
        return Discovery(studies=tuple(studies), problems=tuple(problems))

    def _with_sites(
        self, root: Path, studies: list[StudyRecord], problems: list[DataProblem]
    ) -> list[StudyRecord]:
        return studies  # BraTS 2023 records no institution

    def _record(self, study_id: str, images: dict[str, Path], label: Path | None) -> StudyRecord:
        record = super()._record(study_id, images, label)
        match = _STUDY_RE.match(study_id)
        if match is None:
            return record
        return dataclasses.replace(
            record,
            subject_id=f"BraTS-{match['cohort']}-{match['case']}",
            meta={"cohort": match["cohort"].upper(), "visit": match["visit"]},
        )
