"""Tiny BraTS-2021-layout sites written by tests (a few voxels per volume, seeded)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from shared.config import DataConfig, RunConfig, SiteConfig
from shared.model import build_encoder, global_state

SHAPE = (20, 24, 20)
SPACING = 2.0
#: Each modality is the same textured brain times a constant, so that after per-modality
#: percentile scaling all modalities of a study are equal voxel for voxel.
GAINS: Mapping[str, float] = {"t1": 100.0, "t1ce": 150.0, "t2": 220.0, "flair": 60.0}


def small_config(**overrides: object) -> DataConfig:
    """A DataConfig sized for 20x24x20 volumes at 2 mm."""
    values: dict[str, object] = {"crop_size": 8, "spacing_mm": SPACING, "hist_bins": 8}
    values.update(overrides)
    return DataConfig.model_validate(values)


def brain(seed: int, shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    """An off-centre ellipsoid of positive random texture in a zero background."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij"))
    centre = np.array(shape) / 2 + rng.uniform(-1.5, 1.5, size=3)
    radii = np.array(shape) * rng.uniform(0.3, 0.4, size=3)
    inside = (((grid - centre[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(0) <= 1
    texture = 1.0 + rng.gamma(2.0, 0.5, size=shape)
    return np.where(inside, texture, 0.0).astype(np.float32)


def write_nifti(path: Path, array: np.ndarray, spacing: float = SPACING) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.diag([spacing, spacing, spacing, 1.0])), str(path))
    return path


def study_id(i: int) -> str:
    return f"BraTS2021_{i:05d}"


def write_study(
    root: Path, i: int, *, modalities: Sequence[str] = ("flair", "t1", "t1ce", "t2"),
    label: bool = True, suffix: str = ".nii.gz", seed: int | None = None,
) -> Path:
    """Write one study folder in the BraTS 2021 layout; returns the folder."""
    sid = study_id(i)
    folder = root / sid
    base = brain(i if seed is None else seed)
    for m in modalities:
        write_nifti(folder / f"{sid}_{m}{suffix}", base * GAINS.get(m, 80.0))
    if label:
        seg = np.zeros(SHAPE, dtype=np.uint8)
        seg[8:12, 10:14, 8:12] = 2
        seg[9:11, 11:13, 9:11] = 4
        write_nifti(folder / f"{sid}_seg{suffix}", seg)
    return folder


def write_site(root: Path, num_studies: int = 4) -> list[str]:
    """A site folder with ``num_studies`` complete studies; returns their ids."""
    for i in range(num_studies):
        write_study(root, i)
    return [study_id(i) for i in range(num_studies)]


def round_config(preset: str = "cpu-small", **train: object) -> RunConfig:
    """A seconds-long site round on :func:`write_site`'s studies (16^3 crops, batches of 2,
    2 steps unless ``train`` says otherwise)."""
    return RunConfig.model_validate({
        "model": {"preset": preset},
        "data": {"crop_size": 16, "spacing_mm": SPACING, "batch_size": 2, "hist_bins": 8},
        "train": {"local_steps": 2, "eval_batches": 1, **train},
        "privacy": {"min_studies": 3},
    })


def initial_arrays(preset: str = "cpu-small") -> dict[str, torch.Tensor]:
    """A freshly built encoder's global entries (seed 0), as a round receives them."""
    torch.manual_seed(0)
    return global_state(build_encoder(preset), site_local_norm=True)


def six_study_site(root: Path) -> SiteConfig:
    """A site of 6 written studies under ``root`` (``data/``), its state in ``root/state``."""
    write_site(root / "data", num_studies=6)
    return SiteConfig(data_dir=root / "data", state_dir=root / "state")
