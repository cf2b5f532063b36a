"""One DICOM series (a folder of slices, or one multi-frame file) as a volume with its RAS affine.

fedmm checks a series' headers itself (what to refuse, and why, below), then lets MONAI's
``PydicomReader`` decode, rescale and stack single-frame slices and build the affine from
the headers; that affine must equal the one checked here. How a series is read, so the
result does not depend on file names or exporters:

* **files**: every visible file of the folder is parsed as DICOM (headers first, without
  pixels). Files that are not DICOM Part-10 files (README, thumbnails) are skipped unless
  their name ends in ``.dcm``; DICOM files without an image (DICOMDIR, structured reports,
  presentation states) are skipped. Byte order and VR encoding (explicit/implicit, little or
  big endian, deflated) are pydicom's business and all read the same.
* **one series**: images are grouped by SeriesInstanceUID; a folder holding several series
  (a localizer beside the scan, two contrasts) is refused, listing them, rather than
  guessing which one the study meant.
* **slice order**: by position along the slice normal (``ImagePositionPatient`` projected
  on the cross product of the ``ImageOrientationPatient`` row and column cosines), never by
  InstanceNumber or file name (MONAI 1.6's reader alone would stack by InstanceNumber, so
  it is handed fedmm's order). Slices must share orientation, size and pixel spacing, be
  at distinct positions (several echoes or time points in one series are refused) and be
  evenly spaced (a gap means a missing slice).
* **multi-frame files** (enhanced MR/CT, segmentations, RT dose): per-frame positions from
  the functional groups (or ``GridFrameOffsetVector``), ordered the same way, and read
  here: MONAI's reader takes one position for a whole file, so it cannot place frames.
* **affine** from the headers alone: column i steps along the row cosine by the column
  spacing, row j along the column cosine by the row spacing, slice k by the step between
  sorted slice positions (so a tilted gantry's shear is kept), converted LPS -> RAS.
* **pixels**: decoded by pydicom with the installed decoders; a transfer syntax that none
  of them handles is refused naming it and the missing package. Rescale slope/intercept
  (per frame when given there) or a Modality LUT is applied; MONOCHROME1 values are kept as
  stored. Colour images (RGB, YBR, palette), Siemens mosaics (slices tiled into one
  image) and images without patient geometry (secondary captures, ultrasound, camera
  images) are refused.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from client.data.adapter import DataProblem, DataProblemError
from client.data.read_errors import REDOWNLOAD_FIX, reading
from client.data.volume_header import VolumeHeader, check_geometry

__all__ = ["DicomVolume", "dicom_files", "open_dicom_volume"]

# DICOM is LPS; NIfTI and fedmm's pipeline are RAS.
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: Suffixes of files that sit beside DICOM slices in exports and are not DICOM.
_NOT_DICOM = {".txt", ".json", ".xml", ".html", ".htm", ".pdf", ".jpg", ".jpeg", ".png", ".bmp", ".gif",
              ".csv", ".ini", ".db", ".log", ".md", ".rst", ".zip", ".py"}
_TOL = 1e-4


@dataclass(frozen=True)
class _Frame:
    """One 2D image of the series: where it lies and how to scale it."""

    file: Path
    index: int | None  # frame number in a multi-frame file, None for a single-frame file
    rows: int
    cols: int
    orientation: tuple[float, ...]  # row cosine (3), column cosine (3), LPS
    position: tuple[float, float, float]  # LPS mm of the first transmitted pixel
    spacing: tuple[float, float]  # (between rows, between columns) mm
    slope: float
    intercept: float
    thickness: float


def dicom_files(folder: Path) -> list[Path]:
    """The files of a series folder that may be DICOM (hidden and known other files left out)."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in _NOT_DICOM)


def _item(ds: Any, sequence: str, index: int | None, keyword: str) -> Any:
    """``keyword`` from a frame's functional groups (per-frame, then shared), else top level."""
    groups = []
    if index is not None and "PerFrameFunctionalGroupsSequence" in ds:
        groups.append(ds.PerFrameFunctionalGroupsSequence[index])
    if "SharedFunctionalGroupsSequence" in ds:
        groups.append(ds.SharedFunctionalGroupsSequence[0])
    for group in groups:
        if sequence in group and len(group[sequence].value) and keyword in group[sequence].value[0]:
            return group[sequence].value[0].get(keyword)
    return ds.get(keyword)


def _number(value: Any, default: float) -> float:
    try:
        return float(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _no_geometry(file: Path, ds: Any, missing: list[str]) -> DataProblemError:
    kind = f"{ds.get('Modality', '?')} image, SOP class {getattr(ds.get('SOPClassUID'), 'name', '?')}"
    return DataProblemError(DataProblem(
        path=file, problem=f"expected the patient geometry every MR/CT slice carries, got a {kind} "
        f"without {', '.join(missing)} (a secondary capture, screenshot, ultrasound or camera image "
        "has no position in the patient).",
        fix="export the original MR/CT series from the scanner or PACS."))


def _frames(ds: Any, file: Path) -> list[_Frame]:
    """Every 2D image of one DICOM file, with its geometry (header only)."""
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if samples != 1 or not photometric.startswith("MONOCHROME"):
        raise DataProblemError(DataProblem(
            path=file, problem=f"expected grey-scale pixels (MONOCHROME1/2), got {photometric} with "
            f"{samples} sample(s) per pixel: a colour image, usually a screenshot or a report.",
            fix="export the grey-scale series instead."))
    if "MOSAIC" in [str(v).upper() for v in (ds.get("ImageType") or [])]:
        raise DataProblemError(DataProblem(
            path=file, problem="expected one slice per image, got a Siemens mosaic (ImageType MOSAIC: "
            "the slices of a volume tiled into one image), which fedmm does not un-tile.",
            fix="convert the series to NIfTI with dcm2niix (or nibabel), which un-tiles mosaics."))
    count = int(ds.get("NumberOfFrames", 1) or 1)
    multi = count > 1 or "PerFrameFunctionalGroupsSequence" in ds
    offsets = ds.get("GridFrameOffsetVector")
    frames = []
    for k in range(count):
        index = k if multi else None
        orientation = _item(ds, "PlaneOrientationSequence", index, "ImageOrientationPatient")
        position = _item(ds, "PlanePositionSequence", index, "ImagePositionPatient")
        spacing = _item(ds, "PixelMeasuresSequence", index, "PixelSpacing")
        missing = [name for name, v in (("ImageOrientationPatient", orientation),
                                        ("ImagePositionPatient", position),
                                        ("PixelSpacing", spacing)) if v in (None, "") or len(v) == 0]
        if missing:
            raise _no_geometry(file, ds, missing)
        cosines = tuple(float(v) for v in orientation)
        origin = np.array([float(v) for v in position], dtype=np.float64)
        if count > 1 and "PerFrameFunctionalGroupsSequence" not in ds:
            if offsets is None or len(offsets) != count:
                raise DataProblemError(DataProblem(
                    path=file, problem=f"expected a position for each of the {count} frames "
                    "(per-frame functional groups or GridFrameOffsetVector), got none: frames of a "
                    "cine loop or a time series, not slices of one volume.",
                    fix="export the series as one file per slice, or as enhanced MR/CT."))
            normal = np.cross(cosines[:3], cosines[3:])
            origin = origin + float(offsets[k]) * normal
        slope = _number(_item(ds, "PixelValueTransformationSequence", index, "RescaleSlope"), 1.0)
        intercept = _number(_item(ds, "PixelValueTransformationSequence", index, "RescaleIntercept"), 0.0)
        thickness = _number(ds.get("SpacingBetweenSlices"), 0.0) or _number(
            _item(ds, "PixelMeasuresSequence", index, "SliceThickness"), 1.0) or 1.0
        frames.append(_Frame(
            file=file, index=index, rows=int(ds.Rows), cols=int(ds.Columns), orientation=cosines,
            position=(float(origin[0]), float(origin[1]), float(origin[2])),
            spacing=(float(spacing[0]), float(spacing[1])), slope=slope, intercept=intercept,
            thickness=abs(thickness)))
    return frames


def _check_decoder(ds: Any, file: Path) -> None:
    from pydicom.pixels import get_decoder

    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None:
        raise DataProblemError(DataProblem(
            path=file, problem="expected a Transfer Syntax UID in the file meta information, got none, "
            "so the pixel data cannot be decoded.", fix="re-export the file with a DICOM Part-10 writer."))
    if not syntax.is_compressed:
        return
    decoder = get_decoder(syntax)
    if not decoder.is_available:
        needs = "; ".join(decoder.missing_dependencies) or "a plugin pydicom does not have"
        raise DataProblemError(DataProblem(
            path=file, problem=f"expected pixel data an installed decoder can read, got "
            f"{syntax.name} ({syntax}), which none of the installed pixel decoders handles "
            f"(pydicom would need: {needs}).",
            fix="export the series uncompressed (e.g. `gdcmconv --raw` or `dcmdjpeg`), or install "
            "one of those decoders at the site."))


def _series_label(ds: Any) -> str:
    number = ds.get("SeriesNumber", "?")
    description = str(ds.get("SeriesDescription", "") or "").strip()
    return f"series {number}" + (f" {description!r}" if description else "")


def _read_headers(path: Path) -> list[tuple[Path, Any]]:
    import pydicom
    from pydicom.errors import InvalidDicomError

    files = [path] if path.is_file() else dicom_files(path)
    images = []
    for file in files:
        try:
            with reading(file, "DICOM file"):
                ds = pydicom.dcmread(file, stop_before_pixels=True)
        except DataProblemError as err:
            not_dicom = isinstance(err.__cause__, InvalidDicomError)
            if not_dicom and file != path and file.suffix.lower() != ".dcm":
                continue  # not a DICOM file at all (e.g. an export's index); not part of the series
            raise
        if "Rows" in ds and "Columns" in ds:  # DICOMDIR, reports, RT plans hold no image
            images.append((file, ds))
    if not images:
        found = (f"{len(files)} file(s) of which none holds an image" if path.is_dir() else
                 "a DICOM file without an image (no Rows/Columns)")
        raise DataProblemError(DataProblem(
            path=path, problem=f"expected DICOM image files, got {found}: a DICOMDIR, report, RT "
            "plan or other non-image object.",
            fix="point the study at the folder (or file) that holds the series' images."))
    return images


def _one_series(path: Path, images: list[tuple[Path, Any]]) -> list[tuple[Path, Any]]:
    series: dict[str, list[tuple[Path, Any]]] = defaultdict(list)
    for file, ds in images:
        series[str(ds.get("SeriesInstanceUID", ""))].append((file, ds))
    if len(series) == 1:
        return images
    listed = ", ".join(f"{_series_label(members[0][1])} ({len(members)} image{'s' * (len(members) != 1)})"
                       for members in sorted(series.values(), key=len, reverse=True))
    raise DataProblemError(DataProblem(
        path=path, problem=f"expected one DICOM series in the folder, got {len(series)}: {listed}.",
        fix="move each series into a folder of its own and point the study at the one for this "
        "modality."))


def _sorted_frames(path: Path, frames: list[_Frame]) -> tuple[list[_Frame], np.ndarray]:
    """Frames ordered along the slice normal, and the step between consecutive ones (LPS mm)."""
    first = frames[0]
    for frame in frames[1:]:
        if (frame.rows, frame.cols) != (first.rows, first.cols) or not np.allclose(
                frame.orientation, first.orientation, atol=_TOL) or not np.allclose(
                frame.spacing, first.spacing, rtol=_TOL, atol=_TOL):
            raise DataProblemError(DataProblem(
                path=frame.file, problem=f"expected every image of the series to share size "
                f"{first.rows}x{first.cols}, orientation and pixel spacing with {first.file.name}, got "
                f"{frame.rows}x{frame.cols}, orientation {np.round(frame.orientation, 4).tolist()}, "
                f"spacing {frame.spacing} (the series mixes stacks, e.g. a three-plane localizer).",
                fix="keep one stack per folder."))
    normal = np.cross(first.orientation[:3], first.orientation[3:])
    ordered = sorted(frames, key=lambda f: float(np.dot(f.position, normal)))
    if len(ordered) == 1:
        return ordered, normal * first.thickness
    where = np.array([np.dot(f.position, normal) for f in ordered])
    steps = np.diff(where)
    if steps.min() < _TOL:
        k = int(np.argmin(steps))
        raise DataProblemError(DataProblem(
            path=ordered[k + 1].file, problem=f"expected one image per slice position, got "
            f"{ordered[k].file.name} and {ordered[k + 1].file.name} at the same position "
            f"({where[k]:.2f} mm along the normal): several echoes, time points or b-values in one series.",
            fix="split the series into one folder per echo or volume (dcm2niix does this)."))
    median = float(np.median(steps))
    if float(np.abs(steps - median).max()) > max(0.01, 0.01 * median):
        k = int(np.argmax(np.abs(steps - median)))
        raise DataProblemError(DataProblem(
            path=path, problem=f"expected evenly spaced slices ({median:.3f} mm apart), got "
            f"{steps[k]:.3f} mm between {ordered[k].file.name} and {ordered[k + 1].file.name}: a "
            "slice is missing or the series mixes stacks.",
            fix="restore the missing slice files from the archive, or remove the study."))
    step = (np.array(ordered[-1].position) - np.array(ordered[0].position)) / (len(ordered) - 1)
    return ordered, step


def _affine(first: _Frame, step: np.ndarray) -> np.ndarray:
    """Voxel (i = column, j = row, k = slice) -> RAS mm."""
    row_cos, col_cos = np.array(first.orientation[:3]), np.array(first.orientation[3:])
    row_spacing, col_spacing = first.spacing
    lps = np.eye(4)
    lps[:3, 0] = row_cos * col_spacing
    lps[:3, 1] = col_cos * row_spacing
    lps[:3, 2] = step
    lps[:3, 3] = first.position
    return _LPS_TO_RAS @ lps


class _SliceOrderedPydicomReader:
    """MONAI's ``PydicomReader`` stacking a series in an order given by fedmm.

    MONAI 1.6's reader stacks a series by InstanceNumber (and skips slices without one),
    which exporters number freely; fedmm orders slices by position along the normal. So the
    in-memory datasets' InstanceNumber is set to that rank before MONAI stacks them (the
    files are not touched); MONAI then decodes, rescales, stacks and builds the affine.
    """

    def __new__(cls, rank: dict[str, int], **kwargs: Any) -> Any:
        from monai.data import PydicomReader

        class _Reader(PydicomReader):
            def _combine_dicom_series(self, data: Any, filenames: Any) -> Any:
                for ds, name in zip(data, filenames, strict=True):
                    ds.InstanceNumber = rank[str(Path(name))]
                return super()._combine_dicom_series(data, filenames)

        return _Reader(**kwargs)


@dataclass(frozen=True)
class DicomVolume:
    """A DICOM series whose headers have been checked; pixels not decoded yet."""

    header: VolumeHeader
    frames: tuple[_Frame, ...]

    def read(self) -> np.ndarray:
        """``(X, Y, Z)`` float32: X = column, Y = row, Z = slice along the normal.

        Single-frame slices (a series folder, or one file) are read by MONAI's
        ``PydicomReader``; its affine must agree with the one checked from the headers.
        Multi-frame files are read here: MONAI's reader cannot place their frames (it takes
        one position for the whole file).
        """
        if any(frame.index is not None for frame in self.frames):
            return self._read_multi_frame()
        return self._read_with_monai()

    def _read_with_monai(self) -> np.ndarray:
        import re

        from monai.data import PydicomReader

        files = [frame.file for frame in self.frames]
        source = self.header.path
        if source.is_dir():
            # Only the files of the checked series, whatever else the folder holds.
            rank = {str(file): z + 1 for z, file in enumerate(files)}
            pattern = "^(" + "|".join(re.escape(str(source / file.name)) for file in files) + ")$"
            reader = _SliceOrderedPydicomReader(rank, fname_regex=pattern, prune_metadata=True)
            target = str(source)
        else:
            reader = PydicomReader(prune_metadata=True)
            target = str(files[0])
        with reading(source, "DICOM series" if len(files) > 1 else "DICOM image"):
            loaded = reader.read(target)
        datasets = loaded if isinstance(loaded, list) else [loaded]
        by_file = dict(zip((Path(str(n)) for n in _as_list(reader.filenames[0])), datasets, strict=True))
        for file in files:  # decode each file once here, so a damaged one is named
            ds = by_file[file]
            if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
                raise DataProblemError(DataProblem(
                    path=file, problem="expected pixel data after the image header, got none (the "
                    "file was stripped or cut before its pixels).", fix=REDOWNLOAD_FIX))
            with reading(file, "DICOM image"):
                ds.pixel_array  # noqa: B018 (pydicom keeps the decoded array for MONAI)
                # MONAI reads the geometry through pydicom's JSON encoding, which drops a decimal
                # string longer than DICOM's 16 characters (some exporters write them, pydicom
                # reads them): hand MONAI the numbers fedmm already read.
                for keyword in ("ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing"):
                    if keyword in ds:
                        setattr(ds, keyword, [float(v) for v in ds[keyword].value])
        with reading(source, "DICOM series" if len(files) > 1 else "DICOM image"):
            array, meta = reader.get_data(loaded)
        volume = np.asarray(array, dtype=np.float32).reshape(self.header.shape)
        first = by_file[files[0]]
        if "ModalityLUTSequence" in first and "RescaleSlope" not in first:  # MONAI applies rescale only
            from pydicom.pixels import apply_modality_lut

            for z, file in enumerate(files):
                raw = by_file[file].pixel_array
                volume[:, :, z] = np.asarray(apply_modality_lut(raw, by_file[file]), np.float32).T
        affine = np.asarray(meta["affine"], dtype=np.float64)
        if len(files) == 1:  # MONAI's affine of one 2D image has no slice axis; the header's does
            affine[:3, 2] = self.header.affine[:3, 2]
        if not np.allclose(affine, self.header.affine, atol=1e-3):
            raise DataProblemError(DataProblem(
                path=source, problem="expected MONAI's reader to place the series as its headers do, got "
                f"affine {np.round(affine, 3).tolist()} against {np.round(self.header.affine, 3).tolist()}.",
                fix="convert the series to NIfTI with dcm2niix and point the study at the .nii.gz file."))
        return volume

    def _read_multi_frame(self) -> np.ndarray:
        import pydicom
        from pydicom.pixels import apply_modality_lut

        first = self.frames[0]
        volume = np.empty((first.cols, first.rows, len(self.frames)), dtype=np.float32)
        by_file: dict[Path, list[tuple[int, _Frame]]] = defaultdict(list)
        for z, frame in enumerate(self.frames):
            by_file[frame.file].append((z, frame))
        for file, members in by_file.items():
            with reading(file, "DICOM image"):
                ds = pydicom.dcmread(file)
            if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
                raise DataProblemError(DataProblem(
                    path=file, problem="expected pixel data after the image header, got none (the "
                    "file was stripped or cut before its pixels).", fix=REDOWNLOAD_FIX))
            with reading(file, "DICOM image"):
                pixels = ds.pixel_array
                lut = "ModalityLUTSequence" in ds and "RescaleSlope" not in ds
                if lut:
                    pixels = apply_modality_lut(pixels, ds)
            planes = pixels.reshape(-1, first.rows, first.cols)
            for z, frame in members:
                plane = planes[frame.index or 0].astype(np.float32)
                if not lut:
                    plane = plane * np.float32(frame.slope) + np.float32(frame.intercept)
                volume[:, :, z] = plane.T
        return volume


def _as_list(names: Any) -> list[Any]:
    return list(names) if isinstance(names, list | tuple) else [names]


def open_dicom_volume(path: Path) -> DicomVolume:
    """Read and check the headers of one DICOM series (a folder) or one DICOM file (no pixels).

    Raises:
        DataProblemError: naming the file or folder at fault and the true reason (see the
            module docstring for what is refused).
    """
    path = Path(path)
    images = _one_series(path, _read_headers(path))
    frames: list[_Frame] = []
    for file, ds in images:
        _check_decoder(ds, file)
        with reading(file, "DICOM image header"):
            frames.extend(_frames(ds, file))
    if len(images) > 1 and any(f.index is not None for f in frames):
        raise DataProblemError(DataProblem(
            path=path, problem=f"expected either single-frame slices or one multi-frame file, got "
            f"{len(images)} files of which some hold several frames.",
            fix="keep one multi-frame file per folder, or point the study at the file itself."))
    ordered, step = _sorted_frames(path, frames)
    affine = _affine(ordered[0], step)
    shape = (ordered[0].cols, ordered[0].rows, len(ordered))
    fmt = "DICOM series" if len(images) > 1 else "DICOM file"
    check_geometry(path, fmt=fmt, shape=shape, affine=affine)
    return DicomVolume(header=VolumeHeader(path=path, format=fmt, shape=shape, affine=affine),
                       frames=tuple(ordered))
