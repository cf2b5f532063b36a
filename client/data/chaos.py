"""The CHAOS layout: abdominal CT and MR DICOM series per patient, PNG masks in ``Ground/``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from client.data.adapter import DataProblem, Discovery, StudyRecord, register_adapter
from client.data.scan import no_study_error, require_folder, visible_children

__all__ = ["ChaosAdapter"]

_EXPECTED = (
    "Train_Sets/CT/<id>/{DICOM_anon/*.dcm, Ground/*.png} and Train_Sets/MR/<id>/"
    "{T1DUAL/DICOM_anon/{InPhase,OutPhase}/*.dcm, T1DUAL/Ground/*.png, T2SPIR/DICOM_anon/*.dcm, "
    "T2SPIR/Ground/*.png}"
)
_FOLDER = "Train_Sets"
#: MR mask grey values: liver 63, right kidney 126, left kidney 189, spleen 252.
MR_LABELS: Mapping[int, int] = {63: 1, 126: 2, 189: 3, 252: 4}
#: CT masks mark the liver only (white, 255; some exports write 1).
CT_LABELS: Mapping[int, int] = {1: 1, 255: 1}


@register_adapter("chaos")
class ChaosAdapter:
    """CHAOS (one centre; CT and MR patients are different people: unpaired modalities).

    One study per image grid, because CHAOS's series are not co-registered:
    ``CT_<id>`` (``ct``), ``MR_<id>_T1DUAL`` (``t1_inphase`` + ``t1_outphase``, the two
    echoes of one acquisition) and ``MR_<id>_T2SPIR`` (``t2``); the two MR studies share
    the subject ``MR_<id>``. Volumes are DICOM series folders; masks are PNG slices in
    ``Ground/``, stacked in file-name order onto the series' grid (slice k <-> the k-th
    DICOM file by InstanceNumber). Labels keep CHAOS's organs, **not** the tumour scheme:
    1 liver, 2 right kidney, 3 left kidney, 4 spleen (CT masks: liver only).
    ``meta["scanner"]`` is ``CT`` or ``MR``; ``site`` is the single centre ``DEU``.
    """

    name = "chaos"
    label_scheme: ClassVar[str] = (
        "CHAOS organs (own scheme): MR grey 63/126/189/252 -> 1 liver, 2 right kidney, "
        "3 left kidney, 4 spleen; CT 255 -> 1 liver"
    )

    @classmethod
    def detect(cls, root: Path) -> bool:
        """True for ``Train_Sets`` (or its parent) holding ``CT/`` or ``MR/`` patients."""
        base = cls._base(root)
        for kind in ("CT", "MR"):
            folder = base / kind
            if folder.is_dir() and (any(folder.glob("*/DICOM_anon")) or any(folder.glob("*/*/DICOM_anon"))):
                return True
        return False

    @staticmethod
    def _base(root: Path) -> Path:
        return root / _FOLDER if (root / _FOLDER).is_dir() else root

    def discover(self, root: Path) -> Discovery:
        """List one study per series grid (no DICOM file is opened).

        Raises:
            ValueError: ``root`` is missing or holds no series.
        """
        root = require_folder(root, layout="CHAOS", expected=_EXPECTED)
        base = self._base(root)
        problems: list[DataProblem] = []
        studies: list[StudyRecord] = []
        for patient in self._patients(base / "CT"):
            record = self._study(
                f"CT_{patient.name}", subject=f"CT_{patient.name}", series={"ct": patient / "DICOM_anon"},
                ground=patient / "Ground", label_map=CT_LABELS, scanner="CT", problems=problems,
            )
            studies += [record] if record else []
        for patient in self._patients(base / "MR"):
            subject = f"MR_{patient.name}"
            dual = patient / "T1DUAL"
            spir = patient / "T2SPIR"
            if not dual.is_dir() and not spir.is_dir():
                problems.append(DataProblem(
                    path=patient, problem="expected T1DUAL/ or T2SPIR/ in an MR patient folder, got neither.",
                    fix="restore the patient's series or remove the folder.",
                ))
                continue
            for folder, images in (
                (dual, {"t1_inphase": dual / "DICOM_anon" / "InPhase",
                        "t1_outphase": dual / "DICOM_anon" / "OutPhase"}),
                (spir, {"t2": spir / "DICOM_anon"}),
            ):
                if folder.is_dir():
                    record = self._study(f"{subject}_{folder.name}", subject=subject, series=images,
                                         ground=folder / "Ground", label_map=MR_LABELS, scanner="MR",
                                         problems=problems)
                    studies += [record] if record else []
        if not studies:
            raise no_study_error(base, layout="CHAOS", expected=_EXPECTED, problems=problems)
        return Discovery(studies=tuple(studies), problems=tuple(problems))

    @staticmethod
    def _patients(folder: Path) -> list[Path]:
        return [p for p in visible_children(folder) if p.is_dir()] if folder.is_dir() else []

    @staticmethod
    def _study(
        study_id: str, *, subject: str, series: dict[str, Path], ground: Path,
        label_map: Mapping[int, int], scanner: str, problems: list[DataProblem],
    ) -> StudyRecord | None:
        images: dict[str, Path] = {}
        for modality, folder in series.items():
            if folder.is_dir() and any(p.is_file() for p in visible_children(folder)):
                images[modality] = folder
            else:
                problems.append(DataProblem(
                    path=folder, problem=f"expected a DICOM series folder for {modality}, got "
                    f"{'an empty folder' if folder.is_dir() else 'nothing'}.",
                    fix="restore the series from the CHAOS archive (the study loads without it).",
                ))
        if not images:
            return None
        has_masks = ground.is_dir() and any(p.suffix.lower() == ".png" for p in visible_children(ground))
        return StudyRecord(
            study_id=study_id, subject_id=subject, images=images,
            label=ground if has_masks else None, site="DEU", meta={"scanner": scanner},
            label_map=label_map if has_masks else None,
        )
