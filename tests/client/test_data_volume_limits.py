"""Size caps from the header: the resampled grid (data.max_voxels) and the raw read, no big allocation."""

from __future__ import annotations

import contextlib
import gzip
import resource
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Orientation, Spacing

from client.data import build_deterministic_transforms, load_site_dataset
from client.data.adapter import DataProblemError
from client.data.readers import read_volume
from client.data.volume_limits import RAW_FACTOR, VolumeLimits, resampled_shape
from shared.config import DataConfig
from tests.client.site_data import brain, small_config, study_id, write_site


@contextlib.contextmanager
def address_space(extra_bytes: int) -> Iterator[None]:
    """Let the process map at most ``extra_bytes`` more memory (an allocation beyond fails)."""
    pages = int(Path("/proc/self/statm").read_text().split()[0])
    used = pages * resource.getpagesize()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (used + extra_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _rotation(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


@pytest.mark.parametrize("linear", [
    np.diag([1.0, 1.0, 1.0]), np.diag([0.7, 0.9, 5.0]), np.diag([-1.2, 2.0, 3.3]),
    _rotation(25) @ np.diag([0.9, 0.9, 4.0]), np.array([[0, 0, 2.0], [-1.5, 0, 0], [0, 1.1, 0]]),
], ids=["iso", "thick-slices", "flipped", "oblique", "permuted"])
def test_the_predicted_shape_is_the_pipelines_own(linear: np.ndarray) -> None:
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = linear, [5.0, -3.0, 7.0]
    shape = (11, 13, 9)
    img = MetaTensor(torch.zeros((1, *shape)), affine=torch.as_tensor(affine))
    out = Spacing(pixdim=(2.0, 2.0, 2.0))(Orientation(axcodes="RAS", labels=None)(img))
    assert resampled_shape(shape, affine, spacing_mm=2.0) == tuple(out.shape[1:])


def _header_only_nifti(path: Path, shape: tuple[int, ...], zooms: tuple[float, ...]) -> Path:
    """A NIfTI whose header claims ``shape`` and ``zooms`` but holds a few bytes of voxels."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_zooms(zooms)
    hdr.set_data_dtype(np.int16)
    hdr.set_qform(np.diag([*zooms[:3], 1.0]), code="scanner")
    raw = hdr.binaryblock + b"\0" * (int(hdr["vox_offset"]) - hdr.sizeof_hdr) + bytes(64 * 1024)
    path.write_bytes(gzip.compress(raw) if path.name.endswith(".gz") else raw)
    return path


def test_a_header_claiming_huge_voxels_is_refused_before_any_allocation(tmp_path: Path) -> None:
    # The attack from the security review: a 32^3 volume whose header says 50 mm voxels
    # makes a 2 mm pipeline allocate (32 * 25)^3 floats, about 2 GB, before Spacingd.
    path = tmp_path / "bomb.nii.gz"
    nib.save(nib.Nifti1Image(brain(0, (32, 32, 32)), np.diag([50.0, 50.0, 50.0, 1.0])), path)
    data = DataConfig(modalities=("t1",), spacing_mm=2.0)
    item = {"study_id": "s", "t1": str(path)}
    with address_space(512 * 2**20), pytest.raises(RuntimeError) as err:
        build_deterministic_transforms(data)(item)
    problem = err.value.__cause__
    assert isinstance(problem, DataProblemError) and problem.problem.path == path
    text = problem.problem.problem
    assert "data.max_voxels = 16,777,216" in text and "(50.0, 50.0, 50.0)" in text


@pytest.mark.parametrize(("name", "reason"), [
    ("claims.nii", "128,000,000,000 bytes in the NIfTI-1 data file"),  # checked against the file size
    ("claims.nii.gz", f"{RAW_FACTOR} x data.max_voxels"),  # a gzip bomb: only the cap can tell
])
def test_a_header_claiming_an_absurd_raw_grid_is_refused_before_reading(
    tmp_path: Path, name: str, reason: str
) -> None:
    # 4000^3 int16 = 128 GB claimed by a file of a few kB (a gzip bomb, a damaged dim field).
    path = _header_only_nifti(tmp_path / name, (4000, 4000, 4000), (0.05, 0.05, 0.05))
    with address_space(512 * 2**20), pytest.raises(DataProblemError) as err:
        read_volume(path, limits=VolumeLimits(spacing_mm=2.0, max_voxels=256**3))
    assert reason in err.value.problem.problem and err.value.problem.path == path


def test_an_oversized_study_is_a_problem_at_the_site_and_the_cap_keys_the_verdict(tmp_path: Path) -> None:
    root = tmp_path / "site"
    write_site(root, num_studies=3)  # 20 x 24 x 20 at 2 mm: 9,600 voxels each
    for file in sorted((root / study_id(2)).iterdir()):  # now 6 mm voxels: 58 x 70 x 58 at 2 mm
        nib.save(nib.Nifti1Image(np.asanyarray(nib.load(file).dataobj), np.diag([6.0, 6.0, 6.0, 1.0])), file)
    cache = tmp_path / "cache"
    ds = load_site_dataset(root, data=small_config(max_voxels=20_000), cache_dir=cache, seed=0)
    assert ds.num_studies == 2
    (problem,) = ds.problems
    assert problem.path.parent == root / study_id(2) and "data.max_voxels = 20,000" in problem.problem
    # Raising the cap validates that study again; lowering it refuses studies whose samples
    # are cached (the verdict, not the sample, depends on the cap).
    assert load_site_dataset(root, data=small_config(max_voxels=300_000), cache_dir=cache,
                             seed=0).num_studies == 3
    with pytest.raises(ValueError, match="max_voxels"):
        load_site_dataset(root, data=small_config(max_voxels=9_000), cache_dir=cache, seed=0)
