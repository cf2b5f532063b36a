"""The UPENN-GBM layout: ``images_structural/<case>/`` per case, labels in ``images_segm/``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from client.data.adapter import DataProblem, Discovery, StudyRecord, register_adapter
from client.data.scan import (
    duplicate,
    modality_or_problem,
    no_study_error,
    require_folder,
    suffixed_niftis,
    visible_children,
)

__all__ = ["UpennGbmAdapter"]

_EXPECTED = (
    "images_structural/UPENN-GBM-00002_11/UPENN-GBM-00002_11_{T1,T1GD,T2,FLAIR}.nii.gz and "
    "images_segm/UPENN-GBM-00002_11_segm.nii.gz"
)
_CASE_RE = re.compile(r"^(?P<subject>UPENN-GBM-\d+)_(?P<visit>\d+)$")
_LABEL_FOLDERS = (
    ("images_segm", "_segm", "manual"),
    ("automated_segm", "_automated_approx_segm", "automated"),
)


@register_adapter("upenn_gbm")
class UpennGbmAdapter:
    """UPENN-GBM (one institution, glioblastoma): T1, T1GD, T2, FLAIR per case.

    ``UPENN-GBM-00002_11``: subject ``UPENN-GBM-00002``, visit ``11`` (``21`` is a
    follow-up scan). Labels are the manual ``images_segm`` (or, when a case has none,
    ``automated_segm``; ``meta["label_source"]`` says which) in BraTS 2021 numbering,
    already canonical. ``site`` is ``UPenn`` (single institution), ``meta["grade"]`` 4.
    """

    name = "upenn_gbm"
    label_map: ClassVar[Mapping[int, int]] = {1: 1, 2: 2, 4: 4}
    label_scheme: ClassVar[str] = "BraTS 2021 numbering (canonical): 1 necrotic core, 2 edema, 4 enhancing"

    @classmethod
    def detect(cls, root: Path) -> bool:
        """True for the folder holding ``images_structural/``."""
        return (root / "images_structural").is_dir()

    def discover(self, root: Path) -> Discovery:
        """List the cases (no voxel is read).

        Raises:
            ValueError: ``root`` is missing or holds no case.
        """
        root = require_folder(root, layout="UPENN-GBM", expected=_EXPECTED)
        structural = root / "images_structural"
        problems: list[DataProblem] = []
        studies: list[StudyRecord] = []
        for folder in visible_children(structural) if structural.is_dir() else []:
            match = _CASE_RE.match(folder.name)
            if not folder.is_dir() or match is None:
                problems.append(DataProblem(
                    path=folder, problem=f"expected a case folder UPENN-GBM-<number>_<visit>, got "
                    f"{folder.name!r}.", fix="restore the original name or move it out.",
                ))
                continue
            images = self._images(folder, problems=problems)
            if not images:
                problems.append(DataProblem(
                    path=folder, problem=f"expected images {folder.name}_<T1|T1GD|T2|FLAIR>.nii.gz, "
                    "got none.", fix="restore the case's images or remove the folder.",
                ))
                continue
            label, source = self._label(root, folder.name)
            studies.append(StudyRecord(
                study_id=folder.name, images=images, label=label, site="UPenn",
                subject_id=match["subject"],
                meta={"visit": match["visit"], "grade": "4", "diagnosis": "glioblastoma",
                      **({"label_source": source} if source else {})},
                label_map=self.label_map if label is not None else None,
            ))
        if not studies:
            raise no_study_error(root, layout="UPENN-GBM", expected=_EXPECTED, problems=problems)
        return Discovery(studies=tuple(studies), problems=tuple(problems))

    @staticmethod
    def _images(folder: Path, *, problems: list[DataProblem]) -> dict[str, Path]:
        images: dict[str, Path] = {}
        for suffix, path in suffixed_niftis(folder, folder.name + "_", problems=problems):
            modality = modality_or_problem(suffix, path, problems=problems)
            if modality is None:
                continue
            if modality in images:
                problems.append(duplicate(path, modality, kept=images[modality]))
                continue
            images[modality] = path
        return images

    @staticmethod
    def _label(root: Path, case: str) -> tuple[Path | None, str | None]:
        for folder, suffix, source in _LABEL_FOLDERS:
            for ext in (".nii.gz", ".nii"):
                path = root / folder / f"{case}{suffix}{ext}"
                if path.is_file():
                    return path, source
        return None, None
