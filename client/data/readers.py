"""Reading one volume from disk: NIfTI/Analyze/MGH, a DICOM file or series, PNG label slices.

Every read checks the headers first (format, data type, grid, affine) and the volume's size
against ``VolumeLimits`` before a voxel is read, so a damaged or hostile header costs no
memory; then reads the voxels as native float32 with the voxel-to-RAS affine.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from monai.data import MetaTensor
from monai.utils import MetaKeys, SpaceKeys

from client.data.adapter import DataProblem, DataProblemError
from client.data.dicom_series import open_dicom_volume
from client.data.file_formats import VolumeKind, volume_kind
from client.data.nibabel_volumes import open_nibabel_volume
from client.data.read_errors import reading
from client.data.volume_header import VolumeHeader
from client.data.volume_limits import VolumeLimits

__all__ = ["NOTES_KEY", "VolumeKind", "read_header", "read_volume", "select_channel", "volume_kind"]

logger = logging.getLogger(__name__)

#: MetaTensor meta key: the header's notes (e.g. which of qform/sform was used).
NOTES_KEY = "fedmm_notes"


class _Source(Protocol):
    @property
    def header(self) -> VolumeHeader: ...

    def read(self) -> np.ndarray: ...


def _open(path: Path, kind: VolumeKind) -> _Source:
    return open_nibabel_volume(path) if kind == "nibabel" else open_dicom_volume(path)


def read_header(path: Path) -> VolumeHeader | None:
    """The header of a NIfTI/Analyze/MGH file or a DICOM file or series; None for PNG slices
    (they carry no geometry and take their image's grid).

    Raises:
        DataProblemError: the file cannot be used (see ``read_volume``).
    """
    kind = volume_kind(Path(path))
    return None if kind == "png" else _open(Path(path), kind).header


def read_volume(path: Path, *, like: MetaTensor | None = None,
                limits: VolumeLimits | None = None) -> MetaTensor:
    """Read one volume with its voxel-to-RAS affine; ``meta['filename_or_obj']`` is ``path``.

    Args:
        path: a NIfTI-1/2, Analyze or MGH file, a DICOM file, a folder holding one DICOM
            series, or a folder of PNG slices.
        like: for PNG slices (which carry no geometry), the image whose grid they label:
            its affine is used and its shape must match.
        limits: size caps checked from the header before reading (default: a default run's).

    Returns:
        ``(X, Y, Z)`` (or ``(X, Y, Z, C)`` for a 4D file) float32 MetaTensor, voxels in the
        file's order; ``meta[NOTES_KEY]`` holds the header's notes.

    Raises:
        DataProblemError: the file or series cannot be used; names the file at fault and the
            true reason (format, data type, geometry, size, damage).
    """
    path = Path(path)
    kind = volume_kind(path)
    if kind == "png":
        array, affine = _read_png_slices(path, like=like)
        notes: tuple[str, ...] = ()
    else:
        source = _open(path, kind)
        (limits or VolumeLimits.default()).check(source.header)
        array, affine, notes = source.read(), source.header.affine, source.header.notes
        for note in notes:  # e.g. which of a NIfTI's disagreeing qform and sform was used
            logger.warning("Reading %s: %s", path, note)
    return _meta_tensor(array, affine, path=path, notes=notes)


def _meta_tensor(array: np.ndarray | torch.Tensor, affine: np.ndarray | torch.Tensor, *, path: Path,
                 notes: tuple[str, ...] | list[str] = ()) -> MetaTensor:
    # MONAI derives the spatial dimensions from the affine only when the meta says whether
    # the array has a channel axis (a 4D file's channels are its last axis).
    meta = {"filename_or_obj": str(path), MetaKeys.SPACE: SpaceKeys.RAS, NOTES_KEY: list(notes),
            MetaKeys.ORIGINAL_CHANNEL_DIM: -1 if array.ndim == 4 else "no_channel"}
    data = torch.from_numpy(array) if isinstance(array, np.ndarray) else array
    return MetaTensor(data, affine=torch.as_tensor(affine, dtype=torch.float64), meta=meta)


def select_channel(img: MetaTensor, channel: int) -> MetaTensor:
    """One channel ``(X, Y, Z)`` of a 4D volume ``(X, Y, Z, C)``, keeping its affine and file.

    Raises:
        DataProblemError: the volume is not 4D or has too few channels.
    """
    path = Path(str(img.meta.get("filename_or_obj", "<in-memory volume>")))
    if img.ndim != 4 or not 0 <= channel < img.shape[-1]:
        raise DataProblemError(DataProblem(
            path=path,
            problem=f"expected a 4D volume with channel {channel} on its last axis, got shape "
            f"{tuple(img.shape)}.",
            fix="use the original 4D file of the dataset (e.g. MSD imagesTr/*.nii.gz), or fix the "
            "study's channel (the manifest's channel column counts from 0).",
        ))
    path = Path(str(img.meta.get("filename_or_obj", "<in-memory volume>")))
    return _meta_tensor(img.as_tensor()[..., channel].contiguous(), img.affine, path=path,
                        notes=img.meta.get(NOTES_KEY, []))


def _read_png_slices(folder: Path, *, like: MetaTensor | None) -> tuple[np.ndarray, np.ndarray]:
    """``(X, Y, Z)`` float32 mask from PNG slices in file-name order, on ``like``'s grid."""
    from PIL import Image

    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.suffix.lower() == ".png")
    planes = []
    for file in files:
        with reading(file, "PNG slice"), Image.open(file) as im:
            plane = np.asarray(im)
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
