"""DICOM series written here: encodings, slice order, geometry, and the refusals of dicom_series.py."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
    RLELossless,
    generate_uid,
)

from client.data.adapter import DataProblemError
from client.data.readers import read_volume

ROWS, COLS = 6, 5
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def _plane(k: int) -> np.ndarray:
    return (np.arange(ROWS * COLS).reshape(ROWS, COLS) + 100 * k).astype(np.int16)


def write_slice(path: Path, pixels: np.ndarray, *, position: Sequence[float],
                syntax: str = ExplicitVRLittleEndian, orientation: Sequence[float] = IDENTITY,
                series: str = "1.2.3", instance: int = 1, spacing: tuple[float, float] = (0.8, 0.9),
                slope: float = 1.0, intercept: float = 0.0) -> Path:
    """One single-frame MR slice; ``pixels`` is (rows, columns) int16."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian if syntax == RLELossless else syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "MR", series, 7
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = [float(v) for v in orientation]
    ds.PixelSpacing = list(spacing)
    ds.SliceThickness = 3.0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    big = syntax == ExplicitVRBigEndian
    ds.PixelData = pixels.astype(">i2" if big else "<i2").tobytes()
    if syntax == RLELossless:
        ds.compress(RLELossless, pixels)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, implicit_vr=syntax == ImplicitVRLittleEndian, little_endian=not big,
               enforce_file_format=True)
    return path


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian,
                                    RLELossless], ids=["explicit-le", "explicit-be", "implicit", "rle"])
def test_encodings_read_the_same_voxels(tmp_path: Path, syntax: str) -> None:
    for k in range(3):
        write_slice(tmp_path / f"s{k}.dcm", _plane(k), position=(0, 0, 3.0 * k), syntax=syntax,
                    slope=2.0, intercept=-5.0)
    got = read_volume(tmp_path).numpy()
    assert got.shape == (COLS, ROWS, 3)
    for k in range(3):
        np.testing.assert_array_equal(got[:, :, k], _plane(k).T * 2.0 - 5.0)


def test_slices_follow_their_position_not_instance_number_or_file_name(tmp_path: Path) -> None:
    # File names and InstanceNumbers run one way, positions along the normal another.
    heights = [6.0, 0.0, 9.0, 3.0]
    for k, z in enumerate(heights):
        write_slice(tmp_path / f"a{k}.dcm", _plane(int(z)), position=(0, 0, z), instance=k + 1)
    img = read_volume(tmp_path)
    got = img.numpy()
    for z_index, z in enumerate(sorted(heights)):
        np.testing.assert_array_equal(got[:, :, z_index], _plane(int(z)).T)
    # LPS -> RAS: x and y flip; column step = column spacing (0.9), row step = row spacing (0.8).
    np.testing.assert_allclose(img.affine.numpy(), np.array(
        [[-0.9, 0, 0, 0], [0, -0.8, 0, 0], [0, 0, 3.0, 0], [0, 0, 0, 1]]), atol=1e-9)


def test_an_oblique_series_gets_its_affine_from_the_headers(tmp_path: Path) -> None:
    c, s = np.cos(np.deg2rad(30)), np.sin(np.deg2rad(30))
    orientation = (c, s, 0.0, 0.0, 0.0, -1.0)  # a tilted coronal stack
    normal = np.cross(orientation[:3], orientation[3:])
    origin = np.array([10.0, -20.0, 30.0])
    for k in range(3):
        write_slice(tmp_path / f"o{k}.dcm", _plane(k), position=origin + 2.5 * k * normal,
                    orientation=orientation)
    affine = read_volume(tmp_path).affine.numpy()
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1] = np.array(orientation[:3]) * 0.9, np.array(orientation[3:]) * 0.8
    lps[:3, 2], lps[:3, 3] = 2.5 * normal, origin
    np.testing.assert_allclose(affine, np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps, atol=1e-6)


def test_two_series_in_one_folder_are_refused_naming_both(tmp_path: Path) -> None:
    for k in range(2):
        write_slice(tmp_path / f"t1_{k}.dcm", _plane(k), position=(0, 0, k), series="1.1")
    write_slice(tmp_path / "loc.dcm", _plane(0), position=(0, 0, 0), series="1.2")
    with pytest.raises(DataProblemError, match=r"one DICOM series in the folder, got 2") as err:
        read_volume(tmp_path)
    assert "(2 images)" in err.value.problem.problem and "(1 image)" in err.value.problem.problem
    assert "folder of its own" in err.value.problem.fix


def test_echoes_at_one_position_and_a_missing_slice_are_refused(tmp_path: Path) -> None:
    echoes = tmp_path / "echoes"
    write_slice(echoes / "e1.dcm", _plane(0), position=(0, 0, 0))
    write_slice(echoes / "e2.dcm", _plane(1), position=(0, 0, 0))
    with pytest.raises(DataProblemError, match="same position"):
        read_volume(echoes)
    gap = tmp_path / "gap"
    for k, z in enumerate((0.0, 3.0, 9.0, 12.0)):
        write_slice(gap / f"g{k}.dcm", _plane(k), position=(0, 0, z))
    with pytest.raises(DataProblemError, match="evenly spaced"):
        read_volume(gap)


def test_non_dicom_files_beside_the_slices_are_ignored_but_a_broken_dcm_is_named(tmp_path: Path) -> None:
    for k in range(2):
        write_slice(tmp_path / f"s{k}.dcm", _plane(k), position=(0, 0, 3.0 * k))
    (tmp_path / "README").write_text("exported by PACS")
    (tmp_path / "notes.txt").write_text("hello")
    assert tuple(read_volume(tmp_path).shape) == (COLS, ROWS, 2)
    broken = tmp_path / "s9.dcm"
    broken.write_bytes(b"\0" * 300)
    with pytest.raises(DataProblemError) as err:
        read_volume(tmp_path)
    assert err.value.problem.path == broken and "Part-10" in err.value.problem.problem


def test_a_single_file_is_a_one_slice_volume(tmp_path: Path) -> None:
    path = write_slice(tmp_path / "one.dcm", _plane(2), position=(1, 2, 3))
    img = read_volume(path)
    np.testing.assert_array_equal(img.numpy()[:, :, 0], _plane(2).T)
    np.testing.assert_allclose(img.affine.numpy()[:3, 2], [0, 0, 3.0])  # SliceThickness
