"""Reading one volume from disk: a NIfTI file (3D or 4D), a DICOM series folder, PNG slices."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from monai.data import MetaTensor, NibabelReader
from monai.utils import MetaKeys, SpaceKeys

from client.data.adapter import DataProblem, DataProblemError

__all__ = ["VolumeKind", "read_volume", "select_channel", "volume_kind"]

VolumeKind = Literal["nifti", "dicom", "png"]

_NIFTI_RE = re.compile(r"\.nii(?:\.gz)?$", re.IGNORECASE)
# DICOM is LPS; NIfTI and fedmm's pipeline are RAS.
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _visible_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def volume_kind(path: Path) -> VolumeKind:
    """What a study's volume reference points at.

    Raises:
        DataProblemError: neither a NIfTI file nor a folder of DICOM or PNG files.
    """
    path = Path(path)
    if path.is_dir():
        suffixes = {p.suffix.lower() for p in _visible_files(path)}
        if ".png" in suffixes:
            return "png"
        if suffixes:
            return "dicom"
        raise DataProblemError(DataProblem(
            path=path, problem="expected a folder of DICOM (.dcm) or PNG slices, got an empty folder.",
            fix="restore the series from the original archive or remove the study.",
        ))
    if _NIFTI_RE.search(path.name):
        return "nifti"
    raise DataProblemError(DataProblem(
        path=path,
        problem=f"expected a NIfTI file (.nii/.nii.gz) or a DICOM/PNG folder, got {path.name!r}"
        f"{'' if path.exists() else ' (missing)'}.",
        fix="point the study at a NIfTI file or a series folder.",
    ))


@functools.lru_cache(maxsize=1)
def _nifti_reader() -> NibabelReader:
    # NibabelReader itself rather than LoadImage: LoadImage constructs every reader MONAI
    # knows, and with pydicom installed its GPU DICOM reader logs a warning each time.
    return NibabelReader()


def _read_nifti(path: Path) -> MetaTensor:
    """What ``LoadImage(image_only=True)`` returns for a NIfTI file, through nibabel only."""
    reader = _nifti_reader()
    array, meta = reader.get_data(reader.read(str(path)))
    meta["filename_or_obj"] = str(path)
    img = MetaTensor.ensure_torch_and_prune_meta(array, meta)
    return img if isinstance(img, MetaTensor) else MetaTensor(img)


def _unreadable(path: Path, what: str, err: BaseException) -> DataProblemError:
    return DataProblemError(DataProblem(
        path=path, problem=f"expected a readable {what}, got an error: {type(err).__name__}: {err}",
        fix="re-download or re-export the file, or remove it.",
    ))


def read_volume(path: Path, *, like: MetaTensor | None = None) -> MetaTensor:
    """Read one volume with its voxel-to-RAS affine; ``meta['filename_or_obj']`` is ``path``.

    Args:
        path: a NIfTI file, a folder holding one DICOM series, or a folder of PNG slices.
        like: for PNG slices (which carry no geometry), the image whose grid they label:
            its affine is used and its shape must match.

    Returns:
        ``(X, Y, Z)`` (or ``(X, Y, Z, C)`` for a 4D NIfTI) MetaTensor.

    Raises:
        DataProblemError: the file or series cannot be read; names the file at fault.
    """
    path = Path(path)
    kind = volume_kind(path)
    if kind == "nifti":
        try:
            return _read_nifti(path)
        except Exception as err:  # nibabel/MONAI raise many types for one bad file
            raise _unreadable(path, "NIfTI volume", err) from err
    if kind == "dicom":
        array, affine = _read_dicom_series(path)
    else:
        array, affine = _read_png_slices(path, like=like)
    meta = {"filename_or_obj": str(path), MetaKeys.SPACE: SpaceKeys.RAS}
    return MetaTensor(torch.from_numpy(array), affine=torch.as_tensor(affine), meta=meta)


def select_channel(img: MetaTensor, channel: int) -> MetaTensor:
    """One channel ``(X, Y, Z)`` of a 4D volume ``(X, Y, Z, C)``, keeping its affine and file.

    Raises:
        DataProblemError: the volume is not 4D or has too few channels.
    """
    if img.ndim != 4 or not 0 <= channel < img.shape[-1]:
        path = Path(str(img.meta.get("filename_or_obj", "<in-memory volume>")))
        raise DataProblemError(DataProblem(
            path=path,
            problem=f"expected a 4D volume with channel {channel} on its last axis, got shape "
            f"{tuple(img.shape)}.",
            fix="use the original 4D file of the dataset (e.g. MSD imagesTr/*.nii.gz).",
        ))
    out = img[..., channel]
    return out if isinstance(out, MetaTensor) else MetaTensor(out, affine=img.affine, meta=img.meta)


def _read_dicom_series(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(X, Y, Z)`` float32 voxels in InstanceNumber order and the RAS affine of a series."""
    import pydicom  # only DICOM layouts need it

    slices = []
    for file in _visible_files(folder):
        try:
            ds = pydicom.dcmread(file)
            pixels = ds.pixel_array.astype(np.float32)
        except Exception as err:
            raise _unreadable(file, "DICOM file with pixel data", err) from err
        if pixels.ndim != 2:
            raise DataProblemError(DataProblem(
                path=file, problem=f"expected one 2D slice per DICOM file, got shape {pixels.shape}.",
                fix="convert the series to single-frame files or to NIfTI.",
            ))
        slope = float(getattr(ds, "RescaleSlope", 1.0))
        intercept = float(getattr(ds, "RescaleIntercept", 0.0))
        number = int(getattr(ds, "InstanceNumber", 0) or 0)
        slices.append((number, file.name, ds, pixels * slope + intercept, file))
    slices.sort(key=lambda s: (s[0], s[1]))
    shape = slices[0][3].shape
    for _, _, _, pixels, file in slices:
        if pixels.shape != shape:
            raise DataProblemError(DataProblem(
                path=file, problem=f"expected every slice of the series to be {shape}, got {pixels.shape}.",
                fix="remove the odd file from the series folder.",
            ))
    # DICOM pixel_array is (rows, columns); NIfTI-style voxel axes are (column i, row j).
    volume = np.stack([s[3].T for s in slices], axis=-1).astype(np.float32)
    return volume, _dicom_affine([s[2] for s in slices])


def _dicom_affine(datasets: list) -> np.ndarray:
    """Voxel (i = column, j = row, k = slice) -> RAS mm, from the standard DICOM geometry."""
    first = datasets[0]
    try:
        cosines = np.asarray(first.ImageOrientationPatient, dtype=np.float64)
        origin = np.asarray(first.ImagePositionPatient, dtype=np.float64)
        row_spacing, col_spacing = (float(v) for v in first.PixelSpacing)
    except AttributeError:
        # Without geometry (rare in exported series) fall back to 1 mm voxels.
        return np.eye(4)
    along_row, along_col = cosines[:3], cosines[3:]
    if len(datasets) > 1:
        last = np.asarray(datasets[-1].ImagePositionPatient, dtype=np.float64)
        step = (last - origin) / (len(datasets) - 1)
    else:
        step = np.cross(along_row, along_col) * float(getattr(first, "SliceThickness", 1.0) or 1.0)
    lps = np.eye(4)
    lps[:3, 0] = along_row * col_spacing
    lps[:3, 1] = along_col * row_spacing
    lps[:3, 2] = step
    lps[:3, 3] = origin
    return _LPS_TO_RAS @ lps


def _read_png_slices(folder: Path, *, like: MetaTensor | None) -> tuple[np.ndarray, np.ndarray]:
    """``(X, Y, Z)`` float32 mask from PNG slices in file-name order, on ``like``'s grid."""
    from PIL import Image

    files = [p for p in _visible_files(folder) if p.suffix.lower() == ".png"]
    planes = []
    for file in files:
        try:
            with Image.open(file) as im:
                plane = np.asarray(im)
        except Exception as err:
            raise _unreadable(file, "PNG slice", err) from err
        if plane.ndim == 3:  # an RGB(A) export of a grey mask
            plane = plane[..., 0]
        planes.append(plane.T.astype(np.float32))
    volume = np.stack(planes, axis=-1)
    if like is None:
        return volume, np.eye(4)
    expected = tuple(like.shape[-3:])
    if volume.shape != expected:
        raise DataProblemError(DataProblem(
            path=folder,
            problem=f"expected {expected[2]} PNG slices of {expected[1]}x{expected[0]} pixels "
            f"(the image series' grid), got {volume.shape[2]} of {volume.shape[1]}x{volume.shape[0]}.",
            fix="restore the mask folder that belongs to this series.",
        ))
    return volume, like.affine.numpy()
