"""The MONAI transforms: checks, stacking, foreground scaling, statistics and aligned crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from client.data import DataProblemError, build_crop_transforms, build_deterministic_transforms
from client.data.transforms import (
    CheckVolume,
    ForegroundPercentileScale,
    ForegroundStats,
    StackModalities,
)
from tests.client.site_data import GAINS, brain, small_config, study_id, write_nifti, write_study


def _with_background(seed: int = 0) -> torch.Tensor:
    """(2, 12, 12, 12): two modalities of positive texture inside a zero border."""
    rng = np.random.default_rng(seed)
    img = np.zeros((2, 12, 12, 12), dtype=np.float32)
    img[0, 2:10, 3:9, 2:11] = rng.uniform(5, 500, size=(8, 6, 9))
    img[1, 2:10, 3:9, 2:11] = rng.gamma(2.0, 30.0, size=(8, 6, 9)) + 1
    return torch.from_numpy(img)


def test_percentile_scaling_uses_foreground_only_and_keeps_background_zero() -> None:
    img = _with_background()
    out = ForegroundPercentileScale(lower=1.0, upper=99.0)(img)
    background = img == 0
    assert torch.all(out[background] == 0)
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    for m in range(2):
        fg = img[m][img[m] != 0].numpy()
        lo, hi = np.percentile(fg, [1.0, 99.0])
        expected = np.clip((img[m].numpy() - lo) / (hi - lo), 0, 1) * (img[m].numpy() != 0)
        np.testing.assert_allclose(out[m].numpy(), expected, atol=1e-6)
        # Most voxels are background: percentiles over the whole volume would be 0 at 1 %.
        assert np.percentile(img[m].numpy(), 1.0) == 0


def test_percentile_scaling_skips_missing_modalities() -> None:
    img = _with_background()
    out = ForegroundPercentileScale(lower=0.5, upper=99.5)(img, torch.tensor([1.0, 0.0]))
    assert float(out[0].max()) == 1.0
    assert torch.all(out[1] == 0)


def test_percentile_scaling_rejects_bad_percentiles() -> None:
    with pytest.raises(ValueError, match="lower < upper"):
        ForegroundPercentileScale(lower=60, upper=40)


def test_foreground_stats_match_numpy_reference() -> None:
    img = ForegroundPercentileScale(lower=0.5, upper=99.5)(_with_background())
    img = torch.cat([img, torch.zeros(1, 12, 12, 12)])  # a missing third modality
    stats = ForegroundStats(bins=8)(img, torch.tensor([1.0, 1.0, 0.0]))
    assert stats["fg_mean"].shape == (3,) and stats["fg_hist"].shape == (3, 8)
    for m in range(2):
        fg = img[m].numpy()[img[m].numpy() > 0].astype(np.float64)
        counts, _ = np.histogram(fg, bins=8, range=(0, 1))
        np.testing.assert_allclose(stats["fg_mean"][m], fg.mean(), rtol=1e-6)
        np.testing.assert_allclose(stats["fg_std"][m], fg.std(), rtol=1e-6)
        np.testing.assert_allclose(stats["fg_hist"][m], counts / counts.sum(), rtol=1e-6)
        assert float(stats["fg_hist"][m].sum()) == pytest.approx(1.0)
    assert torch.all(stats["fg_mean"][2] == 0) and torch.all(stats["fg_hist"][2] == 0)


def test_stack_fills_missing_modalities_with_zeros() -> None:
    vol = torch.rand(1, 4, 5, 6) + 0.1
    image, present = StackModalities()([vol, None, 2 * vol])
    assert image.shape == (3, 4, 5, 6) and image.dtype == torch.float32
    assert present.tolist() == [1.0, 0.0, 1.0]
    assert torch.all(image[1] == 0)
    torch.testing.assert_close(image[2], 2 * vol[0])


@pytest.mark.parametrize(
    ("volume", "message"),
    [
        pytest.param(torch.ones(4, 4, 4, 2), "expected a 3D volume", id="4d"),
        pytest.param(torch.full((4, 4, 4), float("nan")), "NaN/inf", id="nan"),
        pytest.param(torch.zeros(4, 4, 4), "all-zero", id="zeros"),
    ],
)
def test_check_volume_names_the_file(volume: torch.Tensor, message: str) -> None:
    img = MetaTensor(volume, meta={"filename_or_obj": "/site/s/s_t1.nii.gz"})
    with pytest.raises(DataProblemError, match=message) as err:
        CheckVolume()(img)
    assert err.value.problem.path == Path("/site/s/s_t1.nii.gz")
    assert err.value.problem.fix


def test_deterministic_pipeline_on_one_study(tmp_path: Path) -> None:
    folder = write_study(tmp_path, 0)
    sid = study_id(0)
    data = small_config()
    item = {"study_id": sid, "label": str(folder / f"{sid}_seg.nii.gz")}
    item |= {m: str(folder / f"{sid}_{m}.nii.gz") for m in ("t1", "t1ce", "t2", "flair")}
    sample = build_deterministic_transforms(data)(item)

    assert set(sample) == {"study_id", "image", "present", "fg_mean", "fg_std", "fg_hist", "label"}
    image = sample["image"]
    assert type(image) is torch.Tensor and image.dtype == torch.float32
    assert image.shape[0] == 4 and sample["label"].shape == (1, *image.shape[1:])
    assert sample["label"].dtype == torch.uint8
    assert set(sample["label"].unique().tolist()) == {0, 2, 4}
    assert float(image.min()) == 0 and float(image.max()) == 1
    # Cropped to the foreground plus a small margin: every face is within the margin.
    fg = (image.sum(0) > 0).nonzero()
    for axis in range(3):
        assert int(fg[:, axis].min()) <= 2
        assert int(fg[:, axis].max()) >= image.shape[axis + 1] - 3
    # Same brain times constants -> equal after per-modality scaling.
    torch.testing.assert_close(image[1], image[0], atol=1e-5, rtol=0)


def test_crops_are_aligned_across_modalities_and_seedable() -> None:
    base = torch.from_numpy(brain(3))[None]
    gains = torch.tensor([GAINS[m] for m in ("t1", "t1ce", "t2", "flair")])
    sample = {"image": base * gains[:, None, None, None], "present": torch.ones(4)}
    crop = build_crop_transforms(small_config())

    def crop_with(seed: int) -> torch.Tensor:
        crop.set_random_state(seed=seed)
        return torch.as_tensor(crop(sample)["image"])

    first = crop_with(5)
    assert first.shape == (4, 8, 8, 8)
    inside = first[0] > 0
    assert inside.any()
    for m in range(4):
        ratio = first[m][inside] / first[0][inside]
        torch.testing.assert_close(ratio, torch.full_like(ratio, float(gains[m] / gains[0])))
    torch.testing.assert_close(crop_with(5), first)
    assert any(not torch.equal(crop_with(s), first) for s in (6, 7, 8))


def test_crop_pads_small_volumes(tmp_path: Path) -> None:
    sample = {"image": torch.rand(2, 5, 9, 3), "present": torch.ones(2)}
    out = build_crop_transforms(small_config())(sample)
    assert tuple(out["image"].shape) == (2, 8, 8, 8)


def test_pipeline_reports_grid_mismatch(tmp_path: Path) -> None:
    folder = write_study(tmp_path, 0, modalities=("t1",), label=False)
    sid = study_id(0)
    odd = write_nifti(folder / f"{sid}_t2.nii.gz", np.ones((20, 24, 12), dtype=np.float32))
    item = {"study_id": sid, "t1": str(folder / f"{sid}_t1.nii.gz"), "t2": str(odd)}
    with pytest.raises(RuntimeError) as err:
        build_deterministic_transforms(small_config())(item)
    cause = err.value.__cause__
    assert isinstance(cause, DataProblemError) and cause.problem.path == odd
