"""Real files no one on this project wrote: nibabel's and pydicom's test data through fedmm's reader.

Each file either reads to exactly what nibabel (or pydicom) reads, before and after the
pipeline's reorientation, or is refused with a reason this test checks against the file
itself; nothing crashes; docs/datasets.md lists every outcome (generated, checked here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import pytest

from client.data.readers import read_volume
from tests.client import real_files

DOCS = Path(__file__).resolve().parents[2] / "docs" / "datasets.md"


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> list[real_files.Outcome]:
    return real_files.walk(tmp_path_factory.mktemp("real"))


def _allclose(got: np.ndarray, want: np.ndarray) -> None:
    scale = max(1.0, float(np.abs(want).max()) if want.size else 1.0)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * scale)


def test_the_walk_covers_both_libraries_and_reads_the_files_from_the_issue(outcomes) -> None:
    by_name = {o.case.name: o for o in outcomes}
    assert len(outcomes) > 200
    for name in ("nibabel/tests/data/anatomical.nii", "nibabel/tests/data/reoriented_anat_moved.nii",
                 "nibabel/tests/data/example_nifti2.nii.gz", "nibabel/tests/data/test.mgz",
                 "pydicom/MR_small_bigendian.dcm", "pydicom/MR_small_implicit.dcm",
                 "pydicom/MR_small_RLE.dcm", "pydicom/MR_small_jp2klossless.dcm"):
        assert by_name[name].read is not None, by_name[name]


def test_every_file_fedmm_reads_equals_the_reference(outcomes) -> None:
    read = [o for o in outcomes if o.read is not None]
    assert len(read) > 40
    for o in read:
        assert o.reference == "reads", f"{o.case.name}: fedmm read a file its library cannot"
        img = read_volume(o.case.path)
        got = img.as_tensor().numpy()
        if o.case.kind == "nibabel":
            want, affine = real_files.nibabel_reference(o.case.path)
            _allclose(got, want.reshape(got.shape))
            np.testing.assert_allclose(img.affine.numpy(), affine, atol=1e-5, err_msg=o.case.name)
            _allclose(real_files.fedmm_ras(img), real_files.canonical_reference(o.case.path).reshape(
                real_files.fedmm_ras(img).shape))
        else:
            want_volume, columns, origin = real_files.dicom_reference(o.case.path)
            _allclose(got, want_volume)
            np.testing.assert_allclose(img.affine.numpy()[:3, 3], origin, atol=1e-3, err_msg=o.case.name)
            if columns is not None:
                np.testing.assert_allclose(img.affine.numpy()[:3, :2], columns, atol=1e-4,
                                           err_msg=o.case.name)


def _dicom_headers(path: Path) -> list[Any]:
    files = [path] if path.is_file() else sorted(path.iterdir())
    out = []
    for file in files:
        try:
            out.append(pydicom.dcmread(file, stop_before_pixels=True))
        except Exception:  # the evidence below only needs the files pydicom parses
            continue
    return out


def _geometry_missing(ds: Any) -> bool:
    shared = ds.get("SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    in_groups = bool(per_frame) and "PlanePositionSequence" in per_frame[0] and shared is not None
    return not in_groups and not all(k in ds for k in ("ImageOrientationPatient", "ImagePositionPatient",
                                                        "PixelSpacing"))


def _evidence(o: real_files.Outcome) -> bool:
    """Is fedmm's reason for refusing this file true of the file? (checked independently)"""
    path, reason = o.case.path, o.reason
    if reason.startswith("expected NIfTI (.nii, .nii.gz)"):  # a format fedmm does not read
        return not path.name.lower().endswith((".nii", ".nii.gz", ".hdr", ".img", ".mgh", ".mgz", ".dcm"))
    if "got no " in reason and "pair" in reason:
        return not path.with_suffix(".img").exists()
    if "CIFTI-2" in reason:
        return type(nib.load(str(path))).__name__ == "Cifti2Image"
    if "colour" in reason:
        return any(ds.get("SamplesPerPixel", 1) != 1 or not str(ds.PhotometricInterpretation).startswith(
            "MONOCHROME") for ds in _dicom_headers(path))
    if "Siemens mosaic" in reason:
        return any("MOSAIC" in list(ds.get("ImageType", [])) for ds in _dicom_headers(path))
    if "patient geometry" in reason:
        return any(_geometry_missing(ds) for ds in _dicom_headers(path))
    if "installed pixel decoders" in reason:
        from pydicom.pixels import get_decoder

        syntaxes = {ds.file_meta.TransferSyntaxUID for ds in _dicom_headers(path)}
        return any(not get_decoder(s).is_available for s in syntaxes)
    if "one DICOM series" in reason:
        return len({ds.SeriesInstanceUID for ds in _dicom_headers(path)}) > 1
    if "share size" in reason:
        return len({tuple(np.round(np.array(ds.ImageOrientationPatient, float), 3))
                    for ds in _dicom_headers(path)}) > 1
    if "evenly spaced" in reason:
        headers = _dicom_headers(path)
        iop = np.array(headers[0].ImageOrientationPatient, float)
        where = np.sort([np.dot(np.array(ds.ImagePositionPatient, float), np.cross(iop[:3], iop[3:]))
                         for ds in headers])
        steps = np.diff(where)
        return float(steps.max() - steps.min()) > 0.01
    if "without an image" in reason or "none holds an image" in reason:
        return all("Rows" not in ds for ds in _dicom_headers(path))
    if "Part-10 preamble" in reason:
        try:
            pydicom.dcmread(path)
        except pydicom.errors.InvalidDicomError:
            return True
        return False
    # Damaged files: truncated, unparsable, pixel data missing or undecodable.
    return o.reference.startswith("fails")


def test_every_refusal_gives_a_reason_that_is_true_of_the_file(outcomes) -> None:
    refused = [o for o in outcomes if o.read is None]
    assert refused
    wrong = [f"{o.case.name}: {o.reason}" for o in refused if not _evidence(o)]
    assert not wrong, "\n".join(wrong)
    assert all("re-download" not in o.reason for o in refused)


def test_the_docs_table_is_the_one_this_walk_generates(outcomes) -> None:
    in_docs = real_files.docs_section(DOCS.read_text())
    assert in_docs, f"{DOCS} lost its generated table; run: {real_files.BEGIN}"
    assert in_docs == real_files.markdown_table(outcomes), (
        "docs/datasets.md's real-files table is stale; regenerate it with "
        "`.venv/bin/python -m tests.client.real_files --write docs/datasets.md`")
