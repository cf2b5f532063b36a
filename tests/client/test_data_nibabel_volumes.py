"""NIfTI-1/2, Analyze pairs and MGH variants, written here, read through read_volume."""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from client.data.adapter import DataProblemError
from client.data.readers import read_volume, select_channel

SHAPE = (6, 5, 4)


def _data(dtype: str) -> np.ndarray:
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    values = np.arange(np.prod(SHAPE)).reshape(SHAPE)
    if info is not None:
        values = np.clip(values * 3 + max(info.min, -50), info.min, min(info.max, 10**6))
    return values.astype(dtype)


@pytest.mark.parametrize("order", ["<", ">"], ids=["little-endian", "big-endian"])
@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64",
                                   "float32", "float64"])
def test_every_real_dtype_in_either_byte_order_reads_as_native_float32(tmp_path: Path, dtype: str,
                                                                        order: str) -> None:
    data = _data(dtype).astype(np.dtype(dtype).newbyteorder(order))
    path = tmp_path / "v.nii"
    img = nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0]), nib.Nifti1Header(endianness=order))
    img.header.set_data_dtype(data.dtype)
    nib.save(img, path)
    assert nib.load(path).header.endianness == order
    got = read_volume(path)
    assert got.dtype.is_floating_point and got.numpy().dtype == np.float32
    np.testing.assert_array_equal(got.numpy(), data.astype(np.float32))


def test_scl_slope_and_inter_are_applied_like_nibabel(tmp_path: Path) -> None:
    raw = _data("int16")
    img = nib.Nifti1Image(raw, np.eye(4))
    img.header.set_slope_inter(2.5, -10.0)
    nib.save(img, tmp_path / "s.nii.gz")
    got = read_volume(tmp_path / "s.nii.gz").numpy()
    np.testing.assert_allclose(got, raw * 2.5 - 10.0)
    np.testing.assert_allclose(got, nib.load(tmp_path / "s.nii.gz").get_fdata())


def test_disagreeing_qform_and_sform_use_the_sform_and_say_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    img = nib.Nifti1Image(_data("float32"), None)
    qform = np.diag([2.0, 2.0, 2.0, 1.0])
    sform = np.diag([2.0, 2.0, 2.0, 1.0])
    sform[:3, 3] = [10.0, -5.0, 3.0]
    img.set_qform(qform, code="scanner")
    img.set_sform(sform, code="aligned")
    nib.save(img, tmp_path / "qs.nii")
    with caplog.at_level(logging.WARNING, logger="client.data"):
        got = read_volume(tmp_path / "qs.nii")
    np.testing.assert_allclose(got.affine.numpy(), sform)
    assert any("the sform was used" in r.getMessage() and "qs.nii" in r.getMessage() for r in caplog.records)
    img.set_sform(sform, code="unknown")  # sform code 0: the qform wins, nothing to say
    nib.save(img, tmp_path / "q.nii")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="client.data"):
        np.testing.assert_allclose(read_volume(tmp_path / "q.nii").affine.numpy(), qform)
    assert not caplog.records


def test_oblique_thick_slice_affine_is_kept(tmp_path: Path) -> None:
    angle = np.deg2rad(20)
    affine = np.eye(4)
    affine[:3, :3] = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                               [0, 0, 1]]) @ np.diag([0.9, 0.9, 5.0])
    nib.save(nib.Nifti1Image(_data("float32"), affine), tmp_path / "o.nii.gz")
    np.testing.assert_allclose(read_volume(tmp_path / "o.nii.gz").affine.numpy(), affine, atol=1e-6)


def test_nifti2_mgz_and_an_analyze_pair_read(tmp_path: Path) -> None:
    data = _data("int16")
    affine = np.diag([1.0, 1.5, 3.0, 1.0])
    nib.save(nib.Nifti2Image(data, affine), tmp_path / "n2.nii")
    nib.save(nib.MGHImage(data.astype(np.float32), affine), tmp_path / "f.mgz")
    nib.save(nib.AnalyzeImage(data, affine), tmp_path / "a.hdr")
    for name in ("n2.nii", "f.mgz", "a.hdr", "a.img"):
        got = read_volume(tmp_path / name)
        np.testing.assert_array_equal(got.numpy(), data, err_msg=name)
        np.testing.assert_allclose(got.affine.numpy(), nib.load(tmp_path / name).affine, err_msg=name)
    (tmp_path / "a.img").unlink()
    with pytest.raises(DataProblemError, match=r"pair a\.hdr \+ a\.img") as err:
        read_volume(tmp_path / "a.hdr")
    assert err.value.problem.path == tmp_path / "a.hdr"


def test_4d_channels_are_selected_and_singleton_axes_dropped(tmp_path: Path) -> None:
    four = np.stack([_data("float32"), _data("float32") * 2], axis=-1)
    nib.save(nib.Nifti1Image(four, np.eye(4)), tmp_path / "4d.nii.gz")
    img = read_volume(tmp_path / "4d.nii.gz")
    np.testing.assert_array_equal(select_channel(img, 1).numpy(), four[..., 1])
    assert select_channel(img, 1).affine.shape == (4, 4)
    nib.save(nib.Nifti1Image(_data("float32")[..., None, None], np.eye(4)), tmp_path / "5d1.nii")
    assert tuple(read_volume(tmp_path / "5d1.nii").shape) == SHAPE
    with pytest.raises(DataProblemError, match="channel 2"):
        select_channel(img, 2)


@pytest.mark.parametrize(("data", "reason"), [
    (np.zeros((*SHAPE, 1, 3), np.float32), "vector, tensor"),
    (np.zeros(SHAPE, np.complex64), "complex"),
], ids=["5d-vector-field", "complex"])
def test_non_image_voxels_are_refused_with_the_reason(tmp_path: Path, data: np.ndarray, reason: str) -> None:
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "x.nii")
    with pytest.raises(DataProblemError, match=reason):
        read_volume(tmp_path / "x.nii")


def test_rgb_nifti_is_refused_as_colour(tmp_path: Path) -> None:
    rgb = np.zeros(SHAPE, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), tmp_path / "rgb.nii")
    with pytest.raises(DataProblemError, match="colour voxels") as err:
        read_volume(tmp_path / "rgb.nii")
    assert "grey-scale" in err.value.problem.fix


def test_damaged_files_get_their_true_reason(tmp_path: Path) -> None:
    nib.save(nib.Nifti1Image(_data("float32"), np.eye(4)), tmp_path / "t.nii")
    full = (tmp_path / "t.nii").read_bytes()
    (tmp_path / "cut.nii").write_bytes(full[:400])
    with pytest.raises(DataProblemError, match="truncated"):
        read_volume(tmp_path / "cut.nii")
    (tmp_path / "plain.nii.gz").write_bytes(full)  # named .gz, not compressed
    with pytest.raises(DataProblemError, match="not gzip-compressed") as err:
        read_volume(tmp_path / "plain.nii.gz")
    assert "rename it without .gz" in err.value.problem.fix
    noise = np.random.default_rng(0).random((20, 20, 20), dtype=np.float32)
    nib.save(nib.Nifti1Image(noise, np.eye(4)), tmp_path / "noise.nii.gz")
    packed = (tmp_path / "noise.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(packed[: len(packed) * 4 // 5])
    with pytest.raises(DataProblemError, match="ends early"):
        read_volume(tmp_path / "cut.nii.gz")
    (tmp_path / "head.nii.gz").write_bytes(packed[:40])
    with pytest.raises(DataProblemError, match="do not start with a NIfTI"):
        read_volume(tmp_path / "head.nii.gz")


@pytest.mark.parametrize(("name", "needle"), [("scan.PAR", "parrec2nii"), ("x.mnc", "MINC"),
                                              ("a+orig.HEAD", "AFNI"), ("x.nrrd", "NRRD")])
def test_other_formats_are_refused_naming_the_converter(tmp_path: Path, name: str, needle: str) -> None:
    (tmp_path / name).write_bytes(b"\0" * 400)
    with pytest.raises(DataProblemError, match=needle):
        read_volume(tmp_path / name)
