"""relative_slice_position specifics: the position target, slab orientation, skipping, loss."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.nn import functional as F

from shared.config import RelativeSlicePositionConfig
from shared.model import build_encoder
from shared.pretext import TaskContext, build_pretext
from shared.pretext.relative_slice_position import STACK_AXES, slab_position
from tests.shared.fitting import fit

MODS = ("t1", "t2")
SIZE = 8
#: Relative crop box per axis (D, H, W): starts, ends.
BOX = torch.tensor([[0.1, 0.2, 0.25], [0.5, 0.8, 0.75]])


def task(**cfg: Any):
    return build_pretext(RelativeSlicePositionConfig(**cfg),
                         context=TaskContext(modalities=MODS, crop_size=SIZE))


def one_voxel_batch(b: int = 1, voxel: tuple[int, int, int] = (1, 2, 5)) -> dict[str, torch.Tensor]:
    """Studies whose only foreground is one voxel of modality 0 (modality 1 absent)."""
    image = torch.zeros(b, 2, SIZE, SIZE, SIZE)
    image[:, 0, voxel[0], voxel[1], voxel[2]] = 0.7
    return {"image": image, "present": torch.tensor([[1.0, 0.0]]).repeat(b, 1),
            "crop_box": BOX.repeat(b, 1, 1)}


def test_slab_position_formula_by_hand() -> None:
    # crop covers [0.25, 0.75] of the volume in 8 voxels; a 2-voxel slab starting at
    # voxel 2 is centred at crop voxel 3.0 -> 0.25 + 3 / 8 * 0.5.
    assert slab_position(box_start=0.25, box_end=0.75, index=2, thickness=2, crop_len=8) == 0.4375
    # a whole-volume crop: slice i of n sits at (i + 0.5) / n
    assert slab_position(box_start=0.0, box_end=1.0, index=0, thickness=1, crop_len=4) == 0.125


@pytest.mark.parametrize("axis", ["sagittal", "coronal", "axial"])
def test_target_and_slab_for_a_known_crop(axis: str) -> None:
    voxel = (1, 2, 5)
    a = STACK_AXES[axis]
    views = task(axis=axis, slices_per_study=2).make_views(one_voxel_batch(voxel=voxel),
                                                           torch.Generator().manual_seed(0))
    start, end = float(BOX[0, a]), float(BOX[1, a])
    expected = start + (voxel[a] + 0.5) / SIZE * (end - start)  # the only foreground slice
    torch.testing.assert_close(views.tensors["position"], torch.full((2,), expected))
    slabs = views.tensors["slabs"]
    assert slabs.shape == (2, 1, 1, SIZE, SIZE)
    # stack axis first; the other two axes keep their (D, H, W) order
    rest = [v for i, v in enumerate(voxel) if i != a]
    assert slabs[0, 0, 0].nonzero().tolist() == [rest]


def test_thick_slabs_are_distinct_and_hold_foreground() -> None:
    views = task(axis="axial", slices_per_study=3, slab_thickness=3).make_views(
        one_voxel_batch(voxel=(1, 2, 5)), torch.Generator().manual_seed(0))
    # slabs of 3 starting at 3, 4 or 5 contain w = 5
    expected = sorted(0.25 + (s + 1.5) / SIZE * 0.5 for s in (3, 4, 5))
    assert sorted(views.tensors["position"].tolist()) == pytest.approx(expected)
    assert views.tensors["slabs"].shape == (3, 1, 3, SIZE, SIZE)
    assert all(float(s.max()) == pytest.approx(0.7) for s in views.tensors["slabs"])


def test_random_axis_puts_the_stack_axis_first() -> None:
    voxel = (1, 2, 5)
    views = task(axis="random", slices_per_study=1).make_views(
        one_voxel_batch(b=12, voxel=voxel), torch.Generator().manual_seed(3))
    seen = set()
    for slab, pos in zip(views.tensors["slabs"], views.tensors["position"], strict=True):
        matches = []
        for a in range(3):
            expected = float(BOX[0, a] + (voxel[a] + 0.5) / SIZE * (BOX[1, a] - BOX[0, a]))
            rest = [v for i, v in enumerate(voxel) if i != a]
            if abs(float(pos) - expected) < 1e-6 and slab[0, 0].nonzero().tolist() == [rest]:
                matches.append(a)
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == {0, 1, 2}  # 12 studies: every axis drawn


def test_views_replay_for_a_seed() -> None:
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.rand(3, 2, SIZE, SIZE, SIZE, generator=g), "present": torch.ones(3, 2),
             "crop_box": BOX.repeat(3, 1, 1)}
    t = task(axis="random", slices_per_study=4)
    a = t.make_views(batch, torch.Generator().manual_seed(5))
    b = t.make_views(batch, torch.Generator().manual_seed(5))
    for key in a.tensors:
        torch.testing.assert_close(a.tensors[key], b.tensors[key])


def test_absent_or_empty_studies_are_skipped() -> None:
    batch = one_voxel_batch(b=3)
    batch["present"][1] = 0.0            # nothing present
    batch["image"][2] = 0.0              # present but all background
    views = task().make_views(batch, torch.Generator().manual_seed(0))
    assert views.num_studies == 1 and views.skipped_studies == 2
    assert views.tensors["slabs"].shape[0] == 4
    batch["present"][0] = 0.0
    empty = task().make_views(batch, torch.Generator().manual_seed(0))
    assert empty.empty and empty.skipped_studies == 3


def test_bad_settings_fail_loudly() -> None:
    with pytest.raises(ValueError, match="slab_thickness"):
        build_pretext(RelativeSlicePositionConfig(slab_thickness=9),
                      context=TaskContext(modalities=MODS, crop_size=SIZE))
    batch = one_voxel_batch()
    batch["image"] = batch["image"][..., :6]
    with pytest.raises(ValueError, match="cubic"):
        task(axis="random").make_views(batch, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="crop_box"):
        task().make_views({"image": batch["image"], "present": batch["present"]},
                          torch.Generator().manual_seed(0))


def ramp_batch(b: int = 3, size: int = 16) -> dict[str, torch.Tensor]:
    """Intensity rises along W (axial stack) with the same anatomy in every study: the
    slab's brightness tells its position, so the problem is learnable."""
    ramp = (torch.arange(size) + 1.0) / size
    image = ramp.view(1, 1, 1, 1, size).expand(b, 1, size, size, size).clone()
    return {"image": image, "present": torch.ones(b, 1),
            "crop_box": torch.tensor([[0.0] * 3, [1.0] * 3]).repeat(b, 1, 1)}


def test_loss_is_the_mse_of_predicted_positions() -> None:
    t = task(slices_per_study=3)
    torch.manual_seed(0)
    encoder = build_encoder("cpu-small")
    head = t.build_head(encoder)
    views = t.make_views(ramp_batch(), torch.Generator().manual_seed(0))
    pred = head(encoder(views.tensors["slabs"]))[:, 0]
    reference = F.mse_loss(pred, views.tensors["position"], reduction="sum") / pred.numel()
    torch.testing.assert_close(t.loss(views, encoder=encoder, head=head), reference)


def test_loss_falls_on_a_learnable_ramp() -> None:
    t = build_pretext(RelativeSlicePositionConfig(slices_per_study=6),
                      context=TaskContext(modalities=("t1",), crop_size=16))
    torch.manual_seed(0)
    encoder = build_encoder("cpu-small")
    head = t.build_head(encoder)
    views = t.make_views(ramp_batch(), torch.Generator().manual_seed(0))
    first, last = fit(t, views, encoder=encoder, head=head, steps=40)
    # below the variance of the targets: the positions are read from the slabs, not guessed
    assert last < 0.3 * first
    assert last < 0.5 * float(views.tensors["position"].var(unbiased=False))
