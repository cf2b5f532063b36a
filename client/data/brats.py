"""The BraTS 2021 folder layout: one sub-folder per study, one NIfTI file per modality."""

from __future__ import annotations

import re
from pathlib import Path

from client.data.adapter import DataProblem, Discovery, StudyRecord, register_adapter
from shared.modalities import canonical_modality

__all__ = ["BratsFolderAdapter"]

_LAYOUT = (
    "<root>/<study>/<study>_<modality>.nii.gz (or .nii), e.g. "
    "BraTS2021_00000/BraTS2021_00000_{flair,t1,t1ce,t2,seg}.nii.gz"
)
# The study prefix may itself hold underscores (BraTS2021_00000), so the modality is the
# text after the *last* underscore.
_FILE_RE = re.compile(r"^(?P<study>.+)_(?P<suffix>[^_]+)\.nii(?:\.gz)?$", re.IGNORECASE)
_NIFTI_RE = re.compile(r"\.nii(?:\.gz)?$", re.IGNORECASE)
_LABEL_SUFFIXES = frozenset({"seg"})


def _visible(path: Path) -> bool:
    # Hidden entries (.DS_Store, ._AppleDouble files, .cache) are never data.
    return not path.name.startswith(".")


@register_adapter("brats2021")
class BratsFolderAdapter:
    """BraTS 2021 training data as distributed (also FeTS-style per-study folders).

    Modality suffixes go through ``shared.modalities.canonical_modality`` so aliases
    (``t1n``, ``t1c``, ``t2f`` ...) are accepted; ``seg`` is the label. Problems with
    single files or studies are reported in ``Discovery.problems``; only a root with no
    study at all is an error.
    """

    name = "brats2021"

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
                f"Expected a site folder laid out as {_LAYOUT}; got {what} at {root}. "
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
                        fix=f"move it to {root}/<study>/<study>_<modality>.nii.gz.",
                    )
                )
            # Other loose files (CSV partitionings, READMEs) are dataset metadata: ignore.
        if not studies:
            raise ValueError(self._nothing_found(root, entries, problems))
        return Discovery(studies=tuple(studies), problems=tuple(problems))

    def _study(self, folder: Path, problems: list[DataProblem]) -> StudyRecord | None:
        study_id = folder.name
        images: dict[str, Path] = {}
        label: Path | None = None
        for path in sorted(p for p in folder.iterdir() if _visible(p)):
            match = _FILE_RE.match(path.name)
            if path.is_dir() or match is None:
                problems.append(
                    DataProblem(
                        path=path,
                        problem=f"expected files named {study_id}_<modality>.nii.gz "
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
                    problem=f"expected at least one image {study_id}_<modality>.nii.gz in "
                    f"the study folder, got none{' (only a label)' if label else ''}.",
                    fix="add the study's images or remove the folder.",
                )
            )
            return None
        return StudyRecord(study_id=study_id, images=images, label=label, meta={})

    @staticmethod
    def _nothing_found(root: Path, entries: list[Path], problems: list[DataProblem]) -> str:
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
            f"Expected study folders laid out as {_LAYOUT} in {root}; got {found} and no "
            f"usable study.{hint} Fix: point data_dir at the folder that directly holds the "
            f"study folders, or fix the files listed below.{details}"
        )


def _duplicate(path: Path, what: str, kept: Path) -> DataProblem:
    return DataProblem(
        path=path,
        problem=f"expected one {what} file per study, got a second one (keeping {kept.name}).",
        fix="remove one of the two files.",
    )
