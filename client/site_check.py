"""``fedmm site check``: what training will see in a site's data folder, before joining.

Nothing here re-implements discovery or validation: studies are listed by the dataset
adapter and validated by the very pipeline training uses (``client.session.open_dataset``,
which also warms the site's cache); this module only gathers the results into a report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib

from client.data import DataProblem, get_adapter
from client.privacy import plan_release, release_chance
from client.session import open_dataset
from shared.config import RunConfig, SiteConfig

_NIFTI = re.compile(r"\.nii(\.gz)?$", re.IGNORECASE)


@dataclass(frozen=True)
class VolumeInfo:
    """One image file as stored: its shape and voxel spacing (mm) from the header."""

    path: Path
    shape: tuple[int, ...] | None
    spacing: tuple[float, ...] | None
    error: str = ""


@dataclass(frozen=True)
class StudyCheck:
    """One study: its files, whether training can use it, and its model-input shape."""

    study_id: str
    images: dict[str, VolumeInfo]
    has_label: bool
    usable: bool
    split: str = ""
    input_shape: tuple[int, ...] | None = None


@dataclass
class SiteCheckReport:
    """What ``fedmm site check`` prints.

    Attributes:
        studies: every study the adapter found, usable or not.
        problems: every problem found (files skipped, with the fix), without repeats.
        fatal: why training cannot use this folder at all ("" when it can).
        min_studies: the run's minimum for releasing statistics (privacy.min_studies, k,
            in patients).
        modality_studies: usable studies per modality of the run.
        modality_patients: patients (the privacy unit) with a usable study per modality.
        release_chances: per modality, the chance that round 0's noisy count releases it
            (client/privacy.py; computed here from exact counts, shown only on the site).
    """

    data_dir: Path
    modalities: tuple[str, ...]
    studies: list[StudyCheck] = field(default_factory=list)
    problems: list[DataProblem] = field(default_factory=list)
    fatal: str = ""
    min_studies: int = 0
    train: int = 0
    eval: int = 0
    modality_studies: dict[str, int] = field(default_factory=dict)
    patients: int = 0
    modality_patients: dict[str, int] = field(default_factory=dict)
    release_chances: dict[str, float] = field(default_factory=dict)

    @property
    def usable(self) -> int:
        return self.train + self.eval

    @property
    def shares_statistics(self) -> bool:
        """True when round 0 more likely than not releases statistics (some modality)."""
        return bool(self.released_modalities)

    @property
    def released_modalities(self) -> list[str]:
        """Modalities that round 0 more likely than not releases."""
        return [m for m, p in self.release_chances.items() if p >= 0.5]

    @property
    def ready(self) -> bool:
        """The site can train (at least one usable study)."""
        return not self.fatal and self.usable > 0


def _volume_info(path: Path) -> VolumeInfo:
    if not _NIFTI.search(path.name):
        return VolumeInfo(path, None, None)  # another format: the pipeline reads it
    try:
        image: Any = nib.load(str(path))  # reads the header only
        shape = tuple(int(s) for s in image.shape)
        spacing = tuple(round(float(z), 3) for z in image.header.get_zooms()[:3])
        return VolumeInfo(path, shape, spacing)
    except Exception as err:  # a corrupt header must be reported, not crash the check
        return VolumeInfo(path, None, None, error=f"{type(err).__name__}: {err}")


def check_site(cfg: RunConfig, site: SiteConfig) -> SiteCheckReport:
    """Inspect a site's data the way training reads it; never raises for bad data.

    Args:
        cfg: the run's settings (data layout, modalities, spacing; privacy minimum).
        site: the site's data folder and state folder (its cache is filled here, so the
            first round starts faster).
    """
    report = SiteCheckReport(data_dir=site.data_dir, modalities=cfg.data.modalities,
                             min_studies=cfg.privacy.min_studies)
    try:
        discovery = get_adapter(cfg.data.layout).discover(site.data_dir)
    except ValueError as err:
        report.fatal = str(err)
        return report
    try:
        dataset = open_dataset(cfg, site)
    except ValueError as err:
        report.fatal = str(err)
        dataset = None
    seen: set[str] = set()
    problems = list(discovery.problems) + (list(dataset.problems) if dataset else [])
    for problem in problems:
        if str(problem) not in seen:
            seen.add(str(problem))
            report.problems.append(problem)
    splits: dict[str, str] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    if dataset is not None:
        report.train, report.eval = len(dataset.train_ids), len(dataset.eval_ids)
        for split in ("train", "eval"):
            ids = dataset.train_ids if split == "train" else dataset.eval_ids
            for sid, sample in zip(ids, dataset.preprocessed(split), strict=True):
                splits[sid] = split
                shapes[sid] = tuple(int(s) for s in sample["image"].shape)
            for stats in dataset.study_stats(split):
                for m, present in zip(cfg.data.modalities, stats["present"], strict=True):
                    report.modality_studies[m] = report.modality_studies.get(m, 0) + int(present > 0)
    for record in discovery.studies:
        report.studies.append(StudyCheck(
            study_id=record.study_id,
            images={m: _volume_info(Path(p)) for m, p in sorted(record.images.items())},
            has_label=record.label is not None,
            usable=record.study_id in splits,
            split=splits.get(record.study_id, ""),
            input_shape=shapes.get(record.study_id),
        ))
    for m in cfg.data.modalities:
        report.modality_studies.setdefault(m, 0)
    if dataset is not None:
        _release_outlook(report, cfg, dataset.patient_study_stats())
    return report


def _release_outlook(report: SiteCheckReport, cfg: RunConfig,
                     studies: list[tuple[str, str, dict[str, Any]]]) -> None:
    """Patients per modality and the chance that round 0 releases each modality."""
    report.patients = len({subject for subject, _, _ in studies})
    plan = plan_release(modalities=tuple(sorted(cfg.data.modalities)), bins=cfg.data.hist_bins,
                        epsilon=cfg.privacy.epsilon)
    for m, name in enumerate(cfg.data.modalities):
        n = len({subject for subject, _, stats in studies if float(stats["present"][m]) > 0.5})
        report.modality_patients[name] = n
        report.release_chances[name] = release_chance(
            n, min_patients=cfg.privacy.min_studies, scale=plan.mechanisms[(name, "count")].scale)
