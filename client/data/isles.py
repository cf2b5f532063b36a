"""The ISLES 2022 layout (BIDS): DWI, ADC and FLAIR per session, lesion masks in ``derivatives/``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from client.data.adapter import DataProblem, Discovery, StudyRecord, register_adapter
from client.data.scan import duplicate, nifti_stem, no_study_error, require_folder, visible_children

__all__ = ["Isles2022Adapter"]

_EXPECTED = (
    "ISLES-2022/sub-strokecase0001/ses-0001/{dwi/sub-strokecase0001_ses-0001_{dwi,adc}.nii.gz, "
    "anat/sub-strokecase0001_ses-0001_FLAIR.nii.gz} and derivatives/sub-strokecase0001/ses-0001/"
    "sub-strokecase0001_ses-0001_msk.nii.gz"
)
_FOLDER = "ISLES-2022"
_SUBJECT_RE = re.compile(r"^sub-[A-Za-z0-9]+$")
_SESSION_RE = re.compile(r"^ses-[A-Za-z0-9]+$")
#: BIDS suffix -> canonical modality, per BIDS datatype folder.
_SUFFIXES = {"dwi": "dwi", "adc": "adc", "flair": "flair"}


@register_adapter("isles2022")
class Isles2022Adapter:
    """ISLES 2022 ischemic stroke lesions: one study per subject and session.

    FLAIR was acquired on its own grid, so every record has ``grid_reference="dwi"``: the
    pipeline resamples FLAIR (and anything else off-grid) onto the DWI grid, where the
    lesion mask lives. Labels keep ISLES's own meaning, **not** the tumour scheme: 0
    background, 1 ischemic lesion. No institution is recorded. JSON sidecars are ignored.
    The root may be ``ISLES-2022`` or the folder holding it.
    """

    name = "isles2022"
    label_map: ClassVar[Mapping[int, int]] = {1: 1}
    label_scheme: ClassVar[str] = "ISLES 2022 (own scheme): 1 ischemic stroke lesion"

    @classmethod
    def detect(cls, root: Path) -> bool:
        """True for a BIDS folder of ``sub-*`` subjects with ``ses-*/dwi`` sessions."""
        base = cls._base(root)
        return any(
            p.is_dir() and _SUBJECT_RE.match(p.name) and any(base.glob(f"{p.name}/ses-*/dwi"))
            for p in visible_children(base)
        )

    @staticmethod
    def _base(root: Path) -> Path:
        return root / _FOLDER if (root / _FOLDER).is_dir() else root

    def discover(self, root: Path) -> Discovery:
        """List one study per subject session (no voxel is read).

        Raises:
            ValueError: ``root`` is missing or holds no session with an image.
        """
        root = require_folder(root, layout="ISLES 2022", expected=_EXPECTED)
        base = self._base(root)
        problems: list[DataProblem] = []
        studies: list[StudyRecord] = []
        for subject in visible_children(base):
            if not subject.is_dir() or not _SUBJECT_RE.match(subject.name):
                continue  # derivatives/, dataset_description.json, participants.tsv
            for session in visible_children(subject):
                if not session.is_dir() or not _SESSION_RE.match(session.name):
                    continue
                record = self._session(base, subject.name, session=session, problems=problems)
                if record is not None:
                    studies.append(record)
        if not studies:
            raise no_study_error(base, layout="ISLES 2022", expected=_EXPECTED, problems=problems)
        return Discovery(studies=tuple(studies), problems=tuple(problems))

    def _session(
        self, base: Path, subject: str, *, session: Path, problems: list[DataProblem]
    ) -> StudyRecord | None:
        prefix = f"{subject}_{session.name}_"
        images: dict[str, Path] = {}
        for datatype in ("dwi", "anat"):
            folder = session / datatype
            for path in visible_children(folder) if folder.is_dir() else []:
                stem = nifti_stem(path.name)
                if stem is None:
                    continue  # JSON sidecars
                suffix = stem[len(prefix):].lower() if stem.startswith(prefix) else None
                modality = _SUFFIXES.get(suffix or "")
                if modality is None:
                    problems.append(DataProblem(
                        path=path, problem=f"expected {prefix}<dwi|adc|FLAIR>.nii.gz, got {path.name!r}.",
                        fix="restore the BIDS name or move the file out of the session.",
                    ))
                    continue
                if modality in images:
                    problems.append(duplicate(path, modality, kept=images[modality]))
                    continue
                images[modality] = path
        if not images:
            problems.append(DataProblem(
                path=session, problem=f"expected {prefix}<dwi|adc>.nii.gz in dwi/ or "
                f"{prefix}FLAIR.nii.gz in anat/, got none.",
                fix="restore the session's images or remove the folder.",
            ))
            return None
        label = None
        for ext in (".nii.gz", ".nii"):
            candidate = base / "derivatives" / subject / session.name / f"{prefix}msk{ext}"
            if candidate.is_file():
                label = candidate
        return StudyRecord(
            study_id=f"{subject}_{session.name}", subject_id=subject, images=images, label=label,
            meta={"session": session.name}, grid_reference="dwi",
            label_map=self.label_map if label is not None else None,
        )
