"""plane_intersection specifics: plane geometry, the line heat map, skipping, loss."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch.nn import functional as F

from shared.config import PlaneIntersectionConfig
from shared.model import build_encoder
from shared.pretext import TaskContext, build_pretext
from shared.pretext.plane_intersection import (
    PlanePair,
    line_distance,
    line_heatmap,
    pixel_offsets,
    plane_frame,
    plane_grid,
    sample_plane,
)
from tests.shared.fitting import fit

MODS = ("t1", "t2")
SIZE = 16
CENTRE = torch.full((3,), (SIZE - 1) / 2, dtype=torch.float64)
AXIAL = plane_frame(0.0, 0.0)
CORONAL = plane_frame(math.pi / 2, 0.0)   # tilted 90 deg about the D axis: normal along H
SAGITTAL = plane_frame(math.pi / 2, math.pi / 2)  # about the H axis: normal along D


def task(**cfg: Any):
    return build_pretext(PlaneIntersectionConfig(**cfg),
                         context=TaskContext(modalities=MODS, crop_size=SIZE))


def ball_batch(b: int = 2) -> dict[str, torch.Tensor]:
    """A bright ball (the 'brain') of varying texture in modality 0, modality 1 absent."""
    g = torch.Generator().manual_seed(0)
    grid = torch.stack(torch.meshgrid(*[torch.arange(SIZE, dtype=torch.float32)] * 3, indexing="ij"))
    inside = ((grid - (SIZE - 1) / 2) ** 2).sum(0) < (SIZE / 2 - 1) ** 2
    image = torch.zeros(b, 2, SIZE, SIZE, SIZE)
    image[:, 0] = inside * (0.2 + 0.8 * torch.rand(b, SIZE, SIZE, SIZE, generator=g))
    return {"image": image, "present": torch.tensor([[1.0, 0.0]]).repeat(b, 1)}


def test_frames_are_right_handed_and_tilted_from_axial() -> None:
    torch.testing.assert_close(AXIAL, torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(CORONAL[2].abs(), torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(SAGITTAL[2].abs(), torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    for tilt, az in ((0.3, 1.0), (1.2, 4.0), (math.pi / 2, 2.5)):
        frame = plane_frame(tilt, az)
        torch.testing.assert_close(frame @ frame.T, torch.eye(3, dtype=torch.float64))
        torch.testing.assert_close(torch.linalg.cross(frame[0], frame[1]), frame[2])
        assert float(frame[2, 2]) == pytest.approx(math.cos(tilt))  # angle to the axial normal


def test_plane_grid_samples_the_expected_voxels() -> None:
    d, h, w = torch.meshgrid(*[torch.arange(SIZE, dtype=torch.float32)] * 3, indexing="ij")
    volume = d + 10 * h + 100 * w  # linear: trilinear sampling is exact inside the volume
    axial = sample_plane(volume, plane_grid(origin=CENTRE, u=AXIAL[0], v=AXIAL[1], size=SIZE,
                                            shape=(SIZE,) * 3))
    rows, cols = torch.meshgrid(torch.arange(SIZE, dtype=torch.float32),
                                torch.arange(SIZE, dtype=torch.float32), indexing="ij")
    torch.testing.assert_close(axial, rows + 10 * cols + 100 * (SIZE - 1) / 2)
    # an oblique plane: compare interior pixels with the analytic value at their voxel point
    frame = plane_frame(0.7, 2.0)
    origin = CENTRE + torch.tensor([0.5, -1.0, 1.5], dtype=torch.float64)
    oblique = sample_plane(volume, plane_grid(origin=origin, u=frame[0], v=frame[1], size=SIZE,
                                              shape=(SIZE,) * 3))
    off = pixel_offsets(SIZE)
    points = origin + off[:, None, None] * frame[0] + off[None, :, None] * frame[1]
    inside = ((points >= 0) & (points <= SIZE - 1)).all(-1)
    expected = (points @ torch.tensor([1.0, 10.0, 100.0], dtype=torch.float64)).float()
    assert inside.sum() > 50
    torch.testing.assert_close(oblique[inside], expected[inside], atol=1e-3, rtol=1e-4)


def test_axial_and_coronal_meet_in_a_column() -> None:
    # coronal plane B at h = centre + 2.5 cuts axial plane A (columns along H) in column 10
    pair = PlanePair(AXIAL, CENTRE, CORONAL, CENTRE + torch.tensor([0.0, 2.5, 0.0], dtype=torch.float64))
    line = pair.line_in_a()
    assert float(line[0]) == pytest.approx(0.0, abs=1e-12)
    heat = line_heatmap(line, size=SIZE, sigma=1.5)
    assert (heat.argmax(dim=1) == 10).all()
    torch.testing.assert_close(heat[:, 10], torch.ones(SIZE))
    torch.testing.assert_close(heat[0, 12], torch.tensor(math.exp(-4 / (2 * 1.5**2)), dtype=torch.float32))


def test_axial_and_sagittal_meet_in_a_row() -> None:
    pair = PlanePair(AXIAL, CENTRE, SAGITTAL, CENTRE + torch.tensor([-3.5, 4.0, 1.0], dtype=torch.float64))
    heat = line_heatmap(pair.line_in_a(), size=SIZE, sigma=2.0)
    assert (heat.argmax(dim=0) == 4).all()  # row 7.5 - 3.5
    torch.testing.assert_close(heat[4], torch.ones(SIZE))


def test_distance_to_line_matches_the_3d_geometry() -> None:
    # a pixel's in-plane distance to the line = its 3D distance to plane B / sin(angle)
    pair = task().sample_pair(torch.Generator().manual_seed(4), (SIZE,) * 3)
    off = pixel_offsets(SIZE)
    points = pair.origin_a + off[:, None, None] * pair.frame_a[0] + off[None, :, None] * pair.frame_a[1]
    to_plane_b = ((points - pair.origin_b) @ pair.frame_b[2]).abs()
    torch.testing.assert_close(line_distance(pair.line_in_a(), SIZE), to_plane_b / pair.sin_angle)


def test_parallel_planes_have_no_line() -> None:
    pair = PlanePair(AXIAL, CENTRE, AXIAL, CENTRE + 1)
    assert pair.sin_angle == 0.0
    with pytest.raises(ValueError, match="parallel"):
        line_distance(pair.line_in_a(), SIZE)


def test_views_cross_near_the_centre_and_replay() -> None:
    t = task()
    a = t.make_views(ball_batch(), torch.Generator().manual_seed(1))
    b = t.make_views(ball_batch(), torch.Generator().manual_seed(1))
    for key in a.tensors:
        torch.testing.assert_close(a.tensors[key], b.tensors[key])
    assert a.tensors["plane_a"].shape == (2, 1, 1, SIZE, SIZE)
    assert a.tensors["heatmap"].shape == (2, 1, SIZE, SIZE)
    heat = a.tensors["heatmap"][:, 0]
    # the line passes within S / 4 of the plane's centre: its peak is near the middle
    middle = heat[:, SIZE // 4: 3 * SIZE // 4, SIZE // 4: 3 * SIZE // 4]
    assert (middle.amax(dim=(1, 2)) > 0.8).all()


def test_absent_or_empty_studies_are_skipped() -> None:
    batch = ball_batch(b=3)
    batch["present"][1] = 0.0     # nothing present
    batch["image"][2] = 0.0       # present but all background
    views = task().make_views(batch, torch.Generator().manual_seed(0))
    assert views.num_studies == 1 and views.skipped_studies == 2
    batch["present"][0] = 0.0
    assert task().make_views(batch, torch.Generator().manual_seed(0)).empty


def test_small_tilts_still_give_lines() -> None:
    views = task(max_tilt_deg=5.0).make_views(ball_batch(b=4), torch.Generator().manual_seed(0))
    assert views.num_studies >= 3
    assert torch.isfinite(views.tensors["heatmap"]).all()


def model_and_views(seed: int = 0):
    t = task(sigma=2.0)
    torch.manual_seed(seed)
    encoder = build_encoder("cpu-small")
    head = t.build_head(encoder)
    return t, encoder, head, t.make_views(ball_batch(), torch.Generator().manual_seed(seed))


def test_loss_is_the_mse_of_the_heat_maps() -> None:
    t, encoder, head, views = model_and_views()
    a, b = views.tensors["plane_a"], views.tensors["plane_b"]
    embed_b = encoder(b)
    pred = head(encoder.forward_features(a), embed_b, size=(SIZE, SIZE))
    reference = F.mse_loss(pred, views.tensors["heatmap"], reduction="sum") / pred.numel()
    torch.testing.assert_close(t.loss(views, encoder=encoder, head=head), reference)


def test_loss_falls_below_the_all_background_answer() -> None:
    t, encoder, head, views = model_and_views()
    first, last = fit(t, views, encoder=encoder, head=head, steps=20)
    all_background = float((views.tensors["heatmap"] ** 2).mean())
    assert last < 0.5 * first
    # predicting zeros everywhere is not enough: the lines have been (over)fitted
    assert last < 0.3 * all_background
