"""NIfTI-1, NIfTI-2, Analyze 7.5 (.hdr/.img pairs) and FreeSurfer MGH/MGZ volumes, read through nibabel.

What fedmm does with each header field, so the array and affine equal nibabel's own:

* **byte order**: big-endian files (older scanners and converters, MGH always) are read by
  nibabel and converted to native float32; nothing to fix for the operator;
* **data types**: every real type (int8 ... float64, uint16, uint32, int64, bool) becomes
  float32; RGB/RGBA and complex voxels are refused (colour screenshots or overlays; k-space
  or phase pairs), with the reason;
* **scl_slope / scl_inter**: applied exactly as nibabel applies them (a slope of 0 or NaN
  means "no scaling", as the NIfTI standard says);
* **affine**: ``img.affine``, which nibabel documents as the sform when sform_code > 0,
  else the qform when qform_code > 0, else the pixdim-only fall-back; when qform and sform
  are both set and disagree, the header's note says by how much and that the sform was
  used. Oblique affines and anisotropic voxels are kept as they are (the pipeline's
  ``Orientationd`` and ``Spacingd`` handle them). Analyze 7.5 has no orientation: nibabel's
  convention (x flipped, i.e. radiological) is assumed and noted;
* **dimensions**: 3D, or 4D with one channel per modality (picked by the study's
  ``channels``); trailing singleton axes are dropped, a 2D image is one slice (Z = 1);
  5D and higher (vector or tensor fields), and CIFTI-2 files (surface data in a .nii
  container), are refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from client.data.adapter import DataProblem, DataProblemError
from client.data.read_errors import REDOWNLOAD_FIX, reading
from client.data.volume_header import VolumeHeader, check_geometry

__all__ = ["NibabelVolume", "open_nibabel_volume"]

#: nibabel image classes fedmm reads, and the name shown to the operator.
_FORMATS: dict[type, str] = {
    nib.Nifti1Image: "NIfTI-1",
    nib.Nifti1Pair: "NIfTI-1 pair (.hdr/.img)",
    nib.Nifti2Image: "NIfTI-2",
    nib.Nifti2Pair: "NIfTI-2 pair (.hdr/.img)",
    nib.AnalyzeImage: "Analyze 7.5",
    nib.Spm99AnalyzeImage: "Analyze 7.5 (SPM99)",
    nib.Spm2AnalyzeImage: "Analyze 7.5 (SPM2)",
    nib.MGHImage: "MGH",
}
_PAIR_SUFFIXES = {".hdr": ".img", ".img": ".hdr"}
#: qform and sform closer than this (mm, at any corner of the grid) count as agreeing.
_AFFINE_AGREEMENT_MM = 0.01


@dataclass(frozen=True)
class NibabelVolume:
    """A nibabel-readable volume whose header has been checked; voxels not read yet."""

    header: VolumeHeader
    image: Any

    def read(self) -> np.ndarray:
        """The voxels, scaled as nibabel scales them, as native float32 of ``header.shape``."""
        with reading(self.header.path, f"{self.header.format} volume"):
            data = np.asarray(self.image.dataobj, dtype=np.float32)
        return np.ascontiguousarray(data.reshape(self.header.shape), dtype=np.float32)


def _companion(path: Path) -> Path | None:
    """The other file of an Analyze/NIfTI pair (``X.hdr`` <-> ``X.img``, with .gz), or None."""
    name = path.name
    gz = name.lower().endswith(".gz")
    stem = name[:-3] if gz else name
    other = _PAIR_SUFFIXES.get(Path(stem).suffix.lower())
    if other is None:
        return None
    # Keep the case style of the given name (X.HDR -> X.IMG).
    other = other.upper() if Path(stem).suffix.isupper() else other
    return path.with_name(stem[: -len(Path(stem).suffix)] + other + (name[-3:] if gz else ""))


def _read_shape(path: Path, shape: tuple[int, ...], fmt: str) -> tuple[int, ...]:
    dims = [int(s) for s in shape]
    while len(dims) > 3 and dims[-1] == 1:
        dims.pop()
    if len(dims) == 2:
        dims.append(1)  # one 2D slice
    if len(dims) < 2 or len(dims) > 4:
        raise DataProblemError(DataProblem(
            path=path, problem=f"expected a 3D volume or a 4D file with one channel per modality, got a "
            f"{fmt} file of shape {tuple(int(s) for s in shape)}.",
            fix="store each 3D volume in its own file (vector, tensor and time-by-channel data "
            "are not images fedmm pretrains on)."))
    return tuple(dims)


def _refuse_dtype(path: Path, dtype: np.dtype, fmt: str) -> None:
    if dtype.fields is not None:
        raise DataProblemError(DataProblem(
            path=path, problem=f"expected grey-scale intensities, got colour voxels ({fmt} data type "
            f"{'RGBA' if len(dtype.fields) == 4 else 'RGB'}), usually a screenshot or an overlay.",
            fix="export the grey-scale series from the scanner or PACS instead."))
    if dtype.kind == "c":
        raise DataProblemError(DataProblem(
            path=path, problem=f"expected real-valued intensities, got complex voxels ({dtype}), e.g. "
            "raw k-space or a real/imaginary pair.",
            fix="export the magnitude image."))
    if dtype.kind not in "biuf":
        raise DataProblemError(DataProblem(
            path=path, problem=f"expected numeric voxels, got data type {dtype}.",
            fix="re-export the volume with an integer or float data type."))


@dataclass(frozen=True)
class _HeaderFields:
    """The header values fedmm uses, taken from nibabel in one guarded block."""

    dtype: np.dtype
    shape: tuple[int, ...]
    affine: np.ndarray
    data_file: Path
    data_offset: int
    forms: tuple[np.ndarray, int, str, np.ndarray, int, str] | None  # qform, code, name, sform ...


def _header_fields(image: Any) -> _HeaderFields:
    hdr = image.header
    forms = None
    if isinstance(image, nib.Nifti1Image | nib.Nifti1Pair):  # NIfTI-2 classes subclass these
        qform, qcode = hdr.get_qform(coded=True)
        sform, scode = hdr.get_sform(coded=True)
        forms = (qform, int(qcode), str(hdr.get_value_label("qform_code")),
                 sform, int(scode), str(hdr.get_value_label("sform_code")))
    return _HeaderFields(
        dtype=np.dtype(hdr.get_data_dtype()), shape=tuple(int(s) for s in image.shape),
        affine=np.array(image.affine, dtype=np.float64),
        data_file=Path(str(image.file_map["image"].filename)),
        data_offset=int(hdr.get_data_offset()), forms=forms)


def _check_size_on_disk(fields: _HeaderFields, fmt: str) -> None:
    """An uncompressed data file must hold every voxel its header announces."""
    data_file = fields.data_file
    if data_file.name.lower().endswith((".gz", ".mgz", ".bz2", ".zst")):
        return  # nibabel reports a short compressed stream when it reads it
    needed = fields.data_offset + int(np.prod(fields.shape)) * fields.dtype.itemsize
    with reading(data_file, f"{fmt} data file"):
        size = os.path.getsize(data_file)
    if size < needed:
        raise DataProblemError(DataProblem(
            path=data_file, problem=f"expected {needed:,} bytes in the {fmt} data file (offset + "
            f"{fields.shape} voxels of {fields.dtype.name}), got {size:,}: it is truncated, e.g. "
            "an interrupted copy.",
            fix=REDOWNLOAD_FIX))


def _affine_notes(path: Path, image: Any, fields: _HeaderFields) -> tuple[str, ...]:
    if isinstance(image, nib.MGHImage):
        return ()
    if fields.forms is None:
        return (f"{path.name}: Analyze 7.5 headers store no orientation; nibabel's convention "
                "(x axis flipped, radiological) was assumed.",)
    qform, qcode, qname, sform, scode, sname = fields.forms
    if not (qcode and scode):
        return ()
    x, y, z = (s - 1 for s in fields.shape[:3])
    corners = np.array([[i, j, k, 1.0] for i in (0, x) for j in (0, y) for k in (0, z)]).T
    gap = float(np.abs((qform - sform) @ corners).max())
    if gap <= _AFFINE_AGREEMENT_MM:
        return ()
    return (f"{path.name}: qform (code {qname}) and sform (code {sname}) disagree by up to "
            f"{gap:.2f} mm; the sform was used, as nibabel and the NIfTI-1 standard prefer it.",)


def open_nibabel_volume(path: Path) -> NibabelVolume:
    """Read and check the header of a NIfTI-1/2, Analyze 7.5 or MGH/MGZ file (no voxels).

    Raises:
        DataProblemError: the file or its pair is missing or damaged, or holds something that
            is not a grey-scale 3D/4D volume; the problem names the file and the true reason.
    """
    path = Path(path)
    companion = _companion(path)
    if companion is not None and not companion.is_file():
        raise DataProblemError(DataProblem(
            path=path, problem=f"expected the pair {path.name} + {companion.name} (Analyze/NIfTI "
            f"pairs keep the header and the voxels in two files), got no {companion.name}.",
            fix=f"copy {companion.name} next to {path.name}, or convert the pair to a single .nii."))
    with reading(path, "NIfTI, Analyze or MGH volume"):
        image = nib.load(str(path))
    fmt = _FORMATS.get(type(image))
    if fmt is None:
        what = ("CIFTI-2 (data on surface vertices and grayordinates, in a .nii container)"
                if type(image).__name__.startswith("Cifti") else type(image).__name__)
        raise DataProblemError(DataProblem(
            path=path, problem=f"expected a NIfTI, Analyze or MGH volume, got {what}.",
            fix="use the volumetric NIfTI export of the scan instead."))
    with reading(path, f"{fmt} volume"):
        fields = _header_fields(image)
    _refuse_dtype(path, fields.dtype, fmt)
    shape = _read_shape(path, fields.shape, fmt)
    _check_size_on_disk(fields, fmt)
    affine = fields.affine
    notes = _affine_notes(path, image, fields)
    check_geometry(path, fmt=fmt, shape=shape, affine=affine)
    return NibabelVolume(header=VolumeHeader(path=path, format=fmt, shape=shape, affine=affine,
                                             notes=notes), image=image)
