"""The Medical Segmentation Decathlon Task01_BrainTumour layout: 4D images, their own label numbers."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from client.data.adapter import DataProblem, Discovery, StudyRecord, register_adapter
from client.data.scan import modality_or_problem, nifti_stem, no_study_error, require_folder, visible_children

__all__ = ["MsdBrainTumourAdapter"]

_FOLDER = "Task01_BrainTumour"
_EXPECTED = (
    "Task01_BrainTumour/{dataset.json, imagesTr/BRATS_001.nii.gz (4D: H x W x D x 4), "
    "labelsTr/BRATS_001.nii.gz, imagesTs/BRATS_485.nii.gz}"
)
#: The documented channel order, used when dataset.json is missing or unreadable.
_DEFAULT_CHANNELS = {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}


@register_adapter("msd_task01")
class MsdBrainTumourAdapter:
    """MSD Task01_BrainTumour: one 4D NIfTI per case, channels 0 FLAIR, 1 T1w, 2 T1gd, 3 T2w.

    Each case's four modalities point at the same file with ``channels`` (read from
    ``dataset.json``'s ``modality`` table). Training cases (``imagesTr``) have labels in
    MSD's numbering, 1 edema, 2 non-enhancing tumour, 3 enhancing, mapped to the canonical
    2, 1, 4; test cases (``imagesTs``) have none (``meta["split"]`` says which). MSD
    records no institution. The root may be Task01_BrainTumour or the folder holding it.
    """

    name = "msd_task01"
    label_map: ClassVar[Mapping[int, int]] = {1: 2, 2: 1, 3: 4}
    label_scheme: ClassVar[str] = (
        "MSD: 1 edema, 2 non-enhancing tumour, 3 enhancing -> canonical 2, 1, 4"
    )

    @classmethod
    def detect(cls, root: Path) -> bool:
        """True for Task01_BrainTumour (dataset.json + imagesTr) or its parent."""
        task = cls._task_folder(root)
        return (task / "imagesTr").is_dir() and (task / "dataset.json").is_file()

    @staticmethod
    def _task_folder(root: Path) -> Path:
        return root / _FOLDER if (root / _FOLDER).is_dir() else root

    def discover(self, root: Path) -> Discovery:
        """List the training and test cases (no voxel is read).

        Raises:
            ValueError: ``root`` is missing or holds no case.
        """
        root = require_folder(root, layout="MSD Task01_BrainTumour", expected=_EXPECTED)
        task = self._task_folder(root)
        problems: list[DataProblem] = []
        spec = self._read_spec(task / "dataset.json", problems=problems)
        channels = self._channels(task / "dataset.json", spec.get("modality"), problems=problems)
        if "training" in spec or "test" in spec:
            entries = self._listed(task, spec, problems=problems)
        else:
            entries = self._scanned(task)
        studies: list[StudyRecord] = []
        for image, label, split in entries:
            if not image.is_file():
                problems.append(DataProblem(
                    path=image, problem="expected the case's 4D image (listed in dataset.json), "
                    "got no file.", fix="restore it from the archive or remove its entry.",
                ))
                continue
            if label is not None and not label.is_file():
                problems.append(DataProblem(
                    path=label, problem="expected the case's label (listed in dataset.json), got "
                    "no file; the case loads without a label.", fix="restore it from the archive.",
                ))
                label = None
            studies.append(StudyRecord(
                study_id=nifti_stem(image.name) or image.name,
                images=dict.fromkeys(channels, image),
                label=label,
                meta={"split": split},
                channels=channels,
                label_map=self.label_map if label is not None else None,
            ))
        if not studies:
            raise no_study_error(task, layout="MSD Task01_BrainTumour", expected=_EXPECTED,
                                 problems=problems)
        return Discovery(studies=tuple(studies), problems=tuple(problems))

    @staticmethod
    def _read_spec(path: Path, *, problems: list[DataProblem]) -> dict[str, Any]:
        if not path.is_file():
            problems.append(DataProblem(
                path=path, problem="expected dataset.json, got none; using the documented "
                "channel order (FLAIR, T1w, T1gd, T2w) and the files on disk.",
                fix="restore dataset.json from the Task01_BrainTumour archive.",
            ))
            return {}
        try:
            spec = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            problems.append(DataProblem(
                path=path, problem=f"expected valid JSON, got {err}; using the documented "
                "channel order and the files on disk.", fix="restore dataset.json from the archive.",
            ))
            return {}
        return spec if isinstance(spec, dict) else {}

    @staticmethod
    def _channels(path: Path, table: Any, *, problems: list[DataProblem]) -> dict[str, int]:
        if not isinstance(table, dict) or not table:
            table = _DEFAULT_CHANNELS
        channels: dict[str, int] = {}
        for index, name in sorted(table.items(), key=lambda kv: int(kv[0])):
            modality = modality_or_problem(str(name), path, problems=problems)
            if modality is not None:
                channels[modality] = int(index)
        return channels

    @staticmethod
    def _listed(
        task: Path, spec: dict[str, Any], *, problems: list[DataProblem]
    ) -> list[tuple[Path, Path | None, str]]:
        entries: list[tuple[Path, Path | None, str]] = []
        for item in spec.get("training", []):
            if not isinstance(item, dict) or "image" not in item:
                problems.append(DataProblem(
                    path=task / "dataset.json", problem=f"expected a training entry with "
                    f"'image' and 'label', got {item!r}.", fix="restore dataset.json.",
                ))
                continue
            label = item.get("label")
            entries.append((task / item["image"], None if label is None else task / label, "train"))
        for item in spec.get("test", []):
            image = item.get("image") if isinstance(item, dict) else item
            if isinstance(image, str):
                entries.append((task / image, None, "test"))
        # normpath, not resolve: drop the "./" of dataset.json without following symlinks.
        return [(_norm(image), label if label is None else _norm(label), split)
                for image, label, split in entries]

    @staticmethod
    def _scanned(task: Path) -> list[tuple[Path, Path | None, str]]:
        entries: list[tuple[Path, Path | None, str]] = []
        for folder, split in (("imagesTr", "train"), ("imagesTs", "test")):
            if not (task / folder).is_dir():
                continue
            for image in visible_children(task / folder):  # skips macOS ._ files
                if nifti_stem(image.name) is None:
                    continue
                label = task / "labelsTr" / image.name if split == "train" else None
                entries.append((image, label if label and label.is_file() else None, split))
        return entries


def _norm(path: Path) -> Path:
    return Path(os.path.normpath(path))
