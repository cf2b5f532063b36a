"""The IXI layout: flat folders of ``IXI<n>-<hospital>-<n>-<modality>.nii.gz``, three London hospitals."""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

from client.data.adapter import DataProblem, Discovery, StudyRecord, register_adapter
from client.data.scan import duplicate, nifti_stem, no_study_error, require_folder, visible_children

__all__ = ["HOSPITALS", "IxiAdapter"]

_EXPECTED = (
    "IXI002-Guys-0828-T1.nii.gz, IXI012-HH-1211-PD.nii.gz, ... (IXI<3 digits>-<Guys|HH|IOP>-"
    "<4 digits>-<T1|T2|PD|MRA|DTI-NN>.nii.gz) in one folder or one folder per modality archive"
)
_NAME_RE = re.compile(
    r"^(?P<subject>IXI(?P<number>\d{3})-(?P<hospital>[A-Za-z]+)-(?P<code>\d{4}))-"
    r"(?P<modality>T1|T2|PD|MRA|DTI-\d{2})$"
)
_LOOSE_RE = re.compile(r"^IXI\d", re.IGNORECASE)
_MODALITIES = {"T1": "t1", "T2": "t2", "PD": "pd", "MRA": "mra"}
#: The hospital is the file name's second field (IXI's own documentation).
HOSPITALS: dict[str, dict[str, str]] = {
    "HH": {"hospital": "Hammersmith Hospital", "scanner": "Philips 3T", "field_strength_t": "3.0"},
    "Guys": {"hospital": "Guy's Hospital", "scanner": "Philips 1.5T", "field_strength_t": "1.5"},
    "IOP": {"hospital": "Institute of Psychiatry", "scanner": "GE 1.5T", "field_strength_t": "1.5"},
}


@register_adapter("ixi")
class IxiAdapter:
    """IXI (about 600 healthy subjects): T1, T2, PD and MRA per subject, not co-registered.

    ``site`` is the hospital code (``Guys``, ``HH``, ``IOP``) and ``meta`` carries the
    hospital, ``scanner`` and ``field_strength_t`` (covariates for partitioners). The
    modalities were acquired separately and sit on different grids, so every record has
    ``grid_reference="t1"``: the pipeline resamples the other volumes onto the T1 grid
    (or the first available modality) through their affines (no registration). DTI
    volumes are not used. No labels (healthy subjects).
    """

    name = "ixi"
    label_scheme: ClassVar[str] = "none (healthy subjects)"

    @classmethod
    def detect(cls, root: Path) -> bool:
        """True when ``root`` or one of its sub-folders holds IXI-named NIfTI files."""
        return any(_NAME_RE.match(nifti_stem(p.name) or "") for p in _candidates(root))

    def discover(self, root: Path) -> Discovery:
        """Group the files by subject (no voxel is read).

        Raises:
            ValueError: ``root`` is missing or holds no IXI file.
        """
        root = require_folder(root, layout="IXI", expected=_EXPECTED)
        problems: list[DataProblem] = []
        subjects: dict[str, dict[str, Path]] = {}
        hospitals: dict[str, str] = {}
        for path in _candidates(root):
            stem = nifti_stem(path.name)
            if stem is None:
                continue  # spreadsheets, READMEs
            match = _NAME_RE.match(stem)
            if match is None:
                if _LOOSE_RE.match(stem):
                    problems.append(DataProblem(
                        path=path, problem="expected an IXI name IXI<3 digits>-<Guys|HH|IOP>-<4 "
                        f"digits>-<T1|T2|PD|MRA|DTI-NN>.nii.gz, got {path.name!r}.",
                        fix="restore the original file name.",
                    ))
                continue
            if match["hospital"] not in HOSPITALS:
                problems.append(DataProblem(
                    path=path, problem=f"expected hospital Guys, HH or IOP, got {match['hospital']!r}.",
                    fix="restore the original file name.",
                ))
                continue
            modality = _MODALITIES.get(match["modality"])
            if modality is None:
                continue  # DTI-00 .. DTI-16: diffusion directions, not used
            images = subjects.setdefault(match["subject"], {})
            hospitals[match["subject"]] = match["hospital"]
            if modality in images:
                problems.append(duplicate(path, modality, kept=images[modality]))
                continue
            images[modality] = path
        studies = [
            StudyRecord(
                study_id=subject, images=images, site=hospitals[subject],
                meta=dict(HOSPITALS[hospitals[subject]]), grid_reference="t1",
            )
            for subject, images in sorted(subjects.items()) if images
        ]
        if not studies:
            raise no_study_error(root, layout="IXI", expected=_EXPECTED, problems=problems)
        return Discovery(studies=tuple(studies), problems=tuple(problems))


def _candidates(root: Path) -> list[Path]:
    """Files in ``root`` and in its direct sub-folders (IXI-T1/, IXI-T2/, ...), sorted."""
    if not root.is_dir():
        return []
    files: list[Path] = []
    for entry in visible_children(root):
        if entry.is_file():
            files.append(entry)
        elif entry.is_dir():
            files.extend(p for p in visible_children(entry) if p.is_file())
    return sorted(files, key=lambda p: (p.name, str(p)))
