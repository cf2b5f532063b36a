"""Tiny fake datasets in the exact on-disk layouts of public datasets (part 1: tumour datasets).

Each builder writes a few 16x18x16 volumes with real file names, the layout's quirks, one
missing modality and one corrupt file, and returns what an adapter must find in it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

SHAPE = (16, 18, 16)
SPACING = 2.0
BRATS = ("t1", "t1ce", "t2", "flair")


@dataclass
class FakeTree:
    """A fake dataset and the truth about it.

    Attributes:
        layout: the registered layout name.
        root: the folder (or CSV) to hand to the adapter.
        sites: subject -> institution (None where the dataset records none).
        modalities: study id -> canonical modalities discovery must list.
        labels: study id -> {canonical label value: voxel count} after mapping (only for
            studies with a readable label).
        corrupt: a listed file that cannot be read (reported when the study loads).
        corrupt_study: the study that file belongs to.
        run_modalities: data.modalities to load the tree with.
        discovery_problems: paths discovery itself must report.
    """

    layout: str
    root: Path
    sites: dict[str, str | None]
    modalities: dict[str, set[str]]
    labels: dict[str, dict[int, int]]
    corrupt: Path
    corrupt_study: str
    run_modalities: tuple[str, ...] = BRATS
    discovery_problems: set[Path] = field(default_factory=set)


def volume(seed: int, shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    """Positive texture inside a 2-voxel zero border (a skull-stripped 'brain')."""
    rng = np.random.default_rng(seed)
    out = np.zeros(shape, dtype=np.float32)
    out[2:-2, 2:-2, 2:-2] = 1.0 + rng.gamma(2.0, 0.5, size=tuple(s - 4 for s in shape))
    return out


def label_volume(values: tuple[int, ...], shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    """Raw label values in blocks of 27, 8, 1 and 4 voxels (distinct counts prove a mapping)."""
    seg = np.zeros(shape, dtype=np.uint8)
    blocks = [np.s_[4:7, 4:7, 4:7], np.s_[8:10, 8:10, 8:10], np.s_[11, 12, 10], np.s_[5:7, 11:13, 9]]
    for value, block in zip(values, blocks, strict=False):
        seg[block] = value
    return seg


BLOCK_SIZES = (27, 8, 1, 4)


def expected_counts(raw: tuple[int, ...], mapping: Mapping[int, int] | None) -> dict[int, int]:
    """Canonical value -> voxels, for ``label_volume(raw)`` mapped through ``mapping``."""
    out: dict[int, int] = {}
    for value, size in zip(raw, BLOCK_SIZES, strict=False):
        canonical = value if mapping is None else mapping[value]
        out[canonical] = out.get(canonical, 0) + size
    return out


def write_nifti(path: Path, array: np.ndarray, *, spacing: float = SPACING,
                origin: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = origin
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


def corrupt(path: Path) -> Path:
    """Overwrite ``path`` with random bytes (a truncated download)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(300))
    return path


def _case_folder(root: Path, study: str, names: Mapping[str, str], *, sep: str, seed: int,
                 label: tuple[int, ...] | None, seg: str = "seg") -> None:
    for suffix in names.values():
        write_nifti(root / study / f"{study}{sep}{suffix}.nii.gz", volume(seed) * (50 + 10 * len(suffix)))
    if label is not None:
        write_nifti(root / study / f"{study}{sep}{seg}.nii.gz", label_volume(label))


BRATS21_RAW = (2, 1, 4)
_BRATS21 = {"t1": "t1", "t1ce": "t1ce", "t2": "t2", "flair": "flair"}


def fets2022(tmp: Path, *, per_site: tuple[int, ...] = (2, 2, 1), corrupt_file: bool = True) -> FakeTree:
    """MICCAI_FeTS2022_TrainingData with partitioning CSVs in CRLF (and a bad row)."""
    root = tmp / "MICCAI_FeTS2022_TrainingData"
    rows, rows2 = ["Partition_ID,Subject_ID"], ["Partition_ID,Subject_ID"]
    sites: dict[str, str | None] = {}
    modalities: dict[str, set[str]] = {}
    labels: dict[str, dict[int, int]] = {}
    number = 1
    for site, count in enumerate(per_site, start=1):
        for _ in range(count):
            sid = f"FeTS2022_{number:05d}"
            names = dict(_BRATS21)
            if number == 2:
                del names["t1ce"]  # the missing modality
            _case_folder(root, sid, names, sep="_", seed=number, label=BRATS21_RAW)
            rows.append(f"{site},{sid}")
            rows2.append(f"{site * 10 + number % 2},{sid}")
            sites[sid], modalities[sid] = str(site), set(names)
            labels[sid] = expected_counts(BRATS21_RAW, None)
            number += 1
    rows.append("x,not-a-case")
    (root / "partitioning_1.csv").write_bytes(("\r\n".join(rows) + "\r\n").encode())
    (root / "partitioning_2.csv").write_bytes(("\r\n".join(rows2) + "\r\n").encode())
    bad = root / "FeTS2022_00001" / "FeTS2022_00001_t2.nii.gz"
    if corrupt_file:
        corrupt(bad)
    return FakeTree("fets2022", root, sites, modalities, labels, bad, "FeTS2022_00001",
                    discovery_problems={root / "partitioning_1.csv"})


def brats2021(tmp: Path) -> FakeTree:
    """BraTS2021_Training_Data with FeTS's partitioning_1.csv beside it (sites by case number)."""
    root = tmp / "BraTS2021_Training_Data"
    sites: dict[str, str | None] = {"BraTS2021_00001": "3", "BraTS2021_00002": "7", "BraTS2021_00003": None}
    modalities: dict[str, set[str]] = {}
    for number, sid in enumerate(sites, start=1):
        names = {k: v for k, v in _BRATS21.items() if not (number == 3 and k == "flair")}
        _case_folder(root, sid, names, sep="_", seed=number, label=BRATS21_RAW)
        modalities[sid] = set(names)
    (tmp / "partitioning_1.csv").write_bytes(
        b"Partition_ID,Subject_ID\r\n3,FeTS2022_00001\r\n7,FeTS2022_00002\r\n")
    bad = corrupt(root / "BraTS2021_00002" / "BraTS2021_00002_t1.nii.gz")
    labels = {sid: expected_counts(BRATS21_RAW, None) for sid in sites}
    return FakeTree("brats2021", root, sites, modalities, labels, bad, "BraTS2021_00002")


BRATS23_RAW = (2, 1, 3)
_BRATS23 = {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f"}


def brats2023(tmp: Path) -> FakeTree:
    """Two challenge folders (GLI, MEN) with hyphenated names and label 3 = enhancing."""
    root = tmp / "brats2023"
    cases = {"GLI": ["BraTS-GLI-00000-000", "BraTS-GLI-00000-001", "BraTS-GLI-00002-000"],
             "MEN": ["BraTS-MEN-00004-000"]}
    modalities: dict[str, set[str]] = {}
    for cohort, studies in cases.items():
        folder = root / f"ASNR-MICCAI-BraTS2023-{cohort}-Challenge-TrainingData"
        for seed, sid in enumerate(studies):
            names = {k: v for k, v in _BRATS23.items() if not (sid.endswith("00002-000") and k == "t2")}
            _case_folder(folder, sid, names, sep="-", seed=seed, label=BRATS23_RAW)
            modalities[sid] = set(names)
    bad = corrupt(root / "ASNR-MICCAI-BraTS2023-MEN-Challenge-TrainingData" / "BraTS-MEN-00004-000"
                  / "BraTS-MEN-00004-000-t2f.nii.gz")
    labels = {sid: expected_counts(BRATS23_RAW, {1: 1, 2: 2, 3: 4}) for sid in modalities}
    sites = dict.fromkeys(["BraTS-GLI-00000", "BraTS-GLI-00002", "BraTS-MEN-00004"])
    return FakeTree("brats2023", root, sites, modalities, labels, bad, "BraTS-MEN-00004-000")


MSD_RAW = (1, 2, 3)


def msd_task01(tmp: Path) -> FakeTree:
    """Task01_BrainTumour: 4D images (FLAIR, T1w, T1gd, T2w), MSD label numbers, macOS ._ files."""
    task = tmp / "Task01_BrainTumour"
    training = []
    for case in ("BRATS_001", "BRATS_002", "BRATS_003"):
        four_d = np.stack([volume(i) * g for i, g in enumerate((60.0, 100.0, 150.0, 220.0))], axis=-1)
        write_nifti(task / "imagesTr" / f"{case}.nii.gz", four_d)
        if case != "BRATS_003":  # listed in dataset.json but missing on disk
            write_nifti(task / "labelsTr" / f"{case}.nii.gz", label_volume(MSD_RAW))
        training.append({"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"})
    write_nifti(task / "imagesTs" / "BRATS_485.nii.gz", np.stack([volume(9)] * 4, axis=-1) * 80)
    (task / "imagesTr" / "._BRATS_001.nii.gz").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    spec = {"name": "BRATS", "modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"},
            "labels": {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"},
            "training": training, "test": ["./imagesTs/BRATS_485.nii.gz"]}
    (task / "dataset.json").write_text(json.dumps(spec))
    bad = corrupt(task / "imagesTr" / "BRATS_002.nii.gz")
    mapping = {1: 2, 2: 1, 3: 4}
    labels = {"BRATS_001": expected_counts(MSD_RAW, mapping)}
    ids = ["BRATS_001", "BRATS_002", "BRATS_003", "BRATS_485"]
    return FakeTree("msd_task01", tmp, dict.fromkeys(ids), {i: set(BRATS) for i in ids}, labels, bad,
                    "BRATS_002", discovery_problems={task / "labelsTr" / "BRATS_003.nii.gz"})


Builder = Callable[[Path], FakeTree]
