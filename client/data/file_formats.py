"""Which reader a volume reference needs, by its name and first bytes; formats fedmm refuses, and why.

fedmm reads NIfTI-1/2 (``.nii``, ``.nii.gz``), Analyze 7.5 and NIfTI pairs (``.hdr`` +
``.img``), FreeSurfer MGH (``.mgh``, ``.mgz``), DICOM (a series folder, or one file: ``.dcm``,
``.ima``, or any name with the DICOM preamble) and PNG slice folders (labels only). Other
formats a hospital or a toolbox may produce are refused with the converter that turns them
into one of those.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from client.data.adapter import DataProblem, DataProblemError
from client.data.read_errors import access_problem

__all__ = ["ACCEPTED", "VolumeKind", "volume_kind"]

VolumeKind = Literal["nibabel", "dicom", "png"]

ACCEPTED = ("NIfTI (.nii, .nii.gz), an Analyze/NIfTI pair (.hdr + .img), FreeSurfer MGH (.mgh, .mgz), "
            "a DICOM file or series folder")
_NIBABEL = (".nii", ".nii.gz", ".hdr", ".img", ".hdr.gz", ".img.gz", ".mgh", ".mgz", ".mgh.gz")
_DICOM = (".dcm", ".dicom", ".ima")
#: Known formats fedmm does not read: suffix -> (what it is, how to convert it).
_REFUSED: dict[str, tuple[str, str]] = {
    ".par": ("a Philips PAR/REC header", "convert it with `parrec2nii` (installed with nibabel)"),
    ".rec": ("Philips PAR/REC voxels", "convert the .PAR/.REC pair with `parrec2nii` (installed "
             "with nibabel)"),
    ".mnc": ("a MINC volume", "convert it with `mnc2nii` (MINC tools) or nibabel "
             "(nib.save(nib.Nifti1Image(...)))"),
    ".head": ("an AFNI header", "convert it with AFNI's `3dAFNItoNIFTI`"),
    ".brik": ("AFNI voxels", "convert the dataset with AFNI's `3dAFNItoNIFTI`"),
    ".brik.gz": ("AFNI voxels", "convert the dataset with AFNI's `3dAFNItoNIFTI`"),
    ".v": ("an ECAT 7 PET file", "convert it to NIfTI (e.g. with nibabel); PET is not an MR contrast"),
    ".nrrd": ("a NRRD volume", "convert it to NIfTI (e.g. 3D Slicer or SimpleITK)"),
    ".nhdr": ("a NRRD header", "convert it to NIfTI (e.g. 3D Slicer or SimpleITK)"),
    ".mha": ("a MetaImage volume", "convert it to NIfTI (e.g. SimpleITK)"),
    ".mhd": ("a MetaImage header", "convert it to NIfTI (e.g. SimpleITK)"),
    ".gii": ("a GIFTI surface file (data on mesh vertices, not a volume)", "use the volumetric scan"),
    ".trk": ("a TrackVis streamline file, not an image", "use the volumetric scan"),
    ".tck": ("an MRtrix streamline file, not an image", "use the volumetric scan"),
    ".dcm.gz": ("a gzip-compressed DICOM file", "decompress it (gunzip) into the series folder"),
    ".gz": ("a gzip-compressed file", "decompress it (gunzip) and point the study at the image inside"),
    ".zip": ("a zip archive", "extract it and point the study at the image inside"),
    ".tar": ("a tar archive", "extract it and point the study at the image inside"),
    ".tar.gz": ("a tar archive", "extract it and point the study at the image inside"),
    ".npy": ("a NumPy array without geometry", "save it as NIfTI with its affine"),
    ".jpg": ("a 2D picture without patient geometry", "export the scan as DICOM or NIfTI"),
    ".jpeg": ("a 2D picture without patient geometry", "export the scan as DICOM or NIfTI"),
    ".png": ("a single 2D picture", "export the scan as DICOM or NIfTI (PNG folders are read as "
             "label slices only)"),
}


def _suffix(name: str) -> str:
    """The longest known suffix of ``name`` (``.nii.gz`` before ``.gz``), lower case."""
    lowered = name.lower()
    known = [s for s in (*_NIBABEL, *_DICOM, *_REFUSED) if lowered.endswith(s)]
    return max(known, key=len) if known else Path(lowered).suffix


def _has_dicom_preamble(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError as err:
        raise DataProblemError(access_problem(path, err)) from err


def volume_kind(path: Path) -> VolumeKind:
    """What a study's volume reference points at.

    Raises:
        DataProblemError: missing, an empty folder, or a format fedmm does not read (the
            problem names the format and the converter).
    """
    path = Path(path)
    if path.is_dir():
        names = [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
        if any(p.suffix.lower() == ".png" for p in names):
            return "png"
        if names:
            return "dicom"
        raise DataProblemError(DataProblem(
            path=path, problem="expected a folder of DICOM (.dcm) or PNG slices, got an empty folder.",
            fix="restore the series from the original archive or remove the study."))
    if not path.exists():
        raise DataProblemError(DataProblem(
            path=path, problem=f"expected {ACCEPTED}, got nothing at this path (missing or moved).",
            fix="restore the file or correct the path that names it."))
    suffix = _suffix(path.name)
    if suffix in _NIBABEL:
        return "nibabel"
    if suffix in _DICOM or _has_dicom_preamble(path):
        return "dicom"
    if suffix in _REFUSED:
        what, how = _REFUSED[suffix]
        raise DataProblemError(DataProblem(
            path=path, problem=f"expected {ACCEPTED}, got {what} ({suffix}).", fix=f"{how}."))
    raise DataProblemError(DataProblem(
        path=path, problem=f"expected {ACCEPTED}, got a file named {path.name!r} that is none of them.",
        fix="convert it to NIfTI, or point the study at the image file itself."))
