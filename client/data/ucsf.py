"""The UCSF-PDGM layout: one ``UCSF-PDGM-<n>_nifti/`` folder per case, grade in a metadata CSV."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from client.data.adapter import DataProblem, Discovery, StudyRecord, register_adapter
from client.data.csv_table import read_csv
from client.data.scan import (
    duplicate,
    modality_or_problem,
    no_study_error,
    require_folder,
    suffixed_niftis,
    visible_children,
)

__all__ = ["UcsfPdgmAdapter"]

_EXPECTED = (
    "UCSF-PDGM-0515_nifti/UCSF-PDGM-0515_{ADC,DWI,FLAIR,T1,T1c,T2}.nii.gz and "
    "UCSF-PDGM-0515_tumor_segmentation.nii.gz (optionally UCSF-PDGM-metadata_v2.csv)"
)
_FOLDER_RE = re.compile(r"^(?P<case>UCSF-PDGM-(?P<number>\d+))_nifti$")
_ID_RE = re.compile(r"^UCSF-PDGM-(?P<number>\d+)$")
_LABEL = "tumor_segmentation"
# Other files of a case: bias-corrected copies, brain masks, SWI, ASL and DTI maps. Not
# modalities fedmm uses, and not problems either.
_IGNORED = re.compile(
    r"^(?:.*_bias|brain_segmentation|brain_parenchyma_segmentation|swi|asl|dti.*)$", re.IGNORECASE
)
_METADATA_GLOB = "UCSF-PDGM-metadata*.csv"
_COVARIATES = {"who cns grade": "grade", "final pathologic diagnosis (who 2021)": "diagnosis",
               "sex": "sex", "idh": "idh"}


@register_adapter("ucsf_pdgm")
class UcsfPdgmAdapter:
    """UCSF-PDGM (one institution, diffuse gliomas): T1, T1c, T2, FLAIR, DWI, ADC per case.

    Labels (``_tumor_segmentation``) use BraTS 2021 numbering, already canonical.
    ``site`` is ``UCSF``. When ``UCSF-PDGM-metadata*.csv`` lies in the root or its parent,
    ``meta`` gets ``grade`` (WHO CNS grade), ``diagnosis``, ``sex`` and ``idh``; the CSV
    writes ids with three digits (``UCSF-PDGM-004``) where folders have four, so ids are
    matched by number.
    """

    name = "ucsf_pdgm"
    label_map: ClassVar[Mapping[int, int]] = {1: 1, 2: 2, 4: 4}
    label_scheme: ClassVar[str] = "BraTS 2021 numbering (canonical): 1 necrotic core, 2 edema, 4 enhancing"

    @classmethod
    def detect(cls, root: Path) -> bool:
        """True for a folder of ``UCSF-PDGM-<n>_nifti`` case folders."""
        return any(p.is_dir() and _FOLDER_RE.match(p.name) for p in visible_children(root))

    def discover(self, root: Path) -> Discovery:
        """List the cases (no voxel is read).

        Raises:
            ValueError: ``root`` is missing or holds no case.
        """
        root = require_folder(root, layout="UCSF-PDGM", expected=_EXPECTED)
        problems: list[DataProblem] = []
        covariates = self._metadata(root, problems=problems)
        studies: list[StudyRecord] = []
        for folder in visible_children(root):
            match = _FOLDER_RE.match(folder.name)
            if not folder.is_dir() or match is None:
                continue
            images, label = self._files(folder, match["case"], problems=problems)
            if not images:
                problems.append(DataProblem(
                    path=folder, problem=f"expected images {match['case']}_<T1|T1c|T2|FLAIR|DWI|"
                    "ADC>.nii.gz, got none.", fix="restore the case's images or remove the folder.",
                ))
                continue
            studies.append(StudyRecord(
                study_id=match["case"], images=images, label=label, site="UCSF",
                meta=covariates.get(int(match["number"]), {}),
                label_map=self.label_map if label is not None else None,
            ))
        if not studies:
            raise no_study_error(root, layout="UCSF-PDGM", expected=_EXPECTED, problems=problems)
        return Discovery(studies=tuple(studies), problems=tuple(problems))

    @staticmethod
    def _files(
        folder: Path, case: str, *, problems: list[DataProblem]
    ) -> tuple[dict[str, Path], Path | None]:
        images: dict[str, Path] = {}
        label: Path | None = None
        for suffix, path in suffixed_niftis(folder, case + "_", problems=problems):
            if suffix.lower() == _LABEL:
                label = path
                continue
            if _IGNORED.match(suffix):
                continue
            modality = modality_or_problem(suffix, path, problems=problems)
            if modality is None:
                continue
            if modality in images:
                problems.append(duplicate(path, modality, kept=images[modality]))
                continue
            images[modality] = path
        return images, label

    @staticmethod
    def _metadata(root: Path, *, problems: list[DataProblem]) -> dict[int, dict[str, str]]:
        files = sorted(root.glob(_METADATA_GLOB)) or sorted(root.parent.glob(_METADATA_GLOB))
        if not files:
            return {}
        try:
            header, rows = read_csv(files[0])
        except ValueError as err:
            problems.append(DataProblem(path=files[0], problem=str(err), fix="restore the CSV."))
            return {}
        if "id" not in header:
            problems.append(DataProblem(
                path=files[0], problem=f"expected an 'ID' column, got {header}.", fix="restore the CSV.",
            ))
            return {}
        out: dict[int, dict[str, str]] = {}
        for _, row in rows:
            match = _ID_RE.match(row["id"])
            if match is None:
                continue
            out[int(match["number"])] = {
                key: row[column] for column, key in _COVARIATES.items() if row.get(column)
            }
        return out
