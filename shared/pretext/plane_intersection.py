"""Plane intersection: regress the heat map of the line where two oblique planes meet (docs/methods.md).

"Self-supervised learning for medical image data with anatomy-oriented imaging planes"
(Zhang, Wei, Zhu, Gu, Zheng; Medical Image Analysis 94:103151, 2024; arXiv 2403.16499).
The paper's "relative orientation" task regresses, on one cardiac view, the lines where
the other standard views cut it, computed from the DICOM geometry and rendered as
Gaussian heat maps of the distance to the line (sigma = 6 px on 224^2), with an MSE loss
and a sigmoid-output decoder (its public code).

Our reconstruction for co-registered 3D brain crops (not in the paper): brain MRI has no
standard oblique views, so both planes are resampled from the crop with random
orientations (as docs/methods.md, plane_intersection, suggests) and the network sees both:

* A plane is the identity axial frame (rows along D, columns along H, normal along W of a
  RAS crop) rotated by a tilt ``~ U(0, cfg.max_tilt_deg)`` about an in-plane axis at a
  random azimuth (uniform in the tilt angle, not in solid angle; no in-plane spin beyond
  what the tilt gives). It is sampled as an ``S x S`` image, S the crop's smallest edge,
  at 1 voxel per pixel (trilinear, zeros outside the crop).
* Both planes pass through one point ``q`` within ``S / 8`` voxels of the crop centre, and
  each plane's window is shifted in-plane by up to ``S / 8`` voxels, so the line always
  crosses both windows near, not at, their centres.
* Near-parallel pairs (angle below ``min(10 deg, max_tilt_deg)``) and pairs where a plane
  holds no foreground are resampled (up to 16 tries, then the study is skipped).
* Target: for plane A's pixel offsets ``(a, b)`` from its centre, plane B is the line
  ``alpha a + beta b + gamma = 0`` with ``alpha = n_B . u_A``, ``beta = n_B . v_A``,
  ``gamma = n_B . (o_A - o_B)``; the heat map is ``exp(-d^2 / (2 sigma^2))`` with
  ``d = |alpha a + beta b + gamma| / sqrt(alpha^2 + beta^2)`` and ``sigma = cfg.sigma``.
* Head: the shared encoder encodes A and B as ``(N, 1, 1, S, S)``; A's deepest map, fused
  with B's pooled embedding broadcast over it, is decoded U-Net-style with A's skips to a
  sigmoid heat map of plane A.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from shared.config import PlaneIntersectionConfig
from shared.model.encoder import MultiModalEncoder
from shared.pretext.base import Batch, TaskContext, TaskRequirements, Views
from shared.pretext.registry import register_pretext

#: Smallest angle between the two planes (degrees), capped by ``max_tilt_deg``.
MIN_ANGLE_DEG = 10.0
#: Jitter of the shared point and of each plane's window, as a fraction of the plane edge.
CENTRE_JITTER = 1 / 8
#: Geometry draws per study before the study is skipped.
MAX_ATTEMPTS = 16


def plane_frame(tilt: float, azimuth: float) -> torch.Tensor:
    """Rows ``u, v, n`` (float64 ``(3, 3)``, in (D, H, W) voxel axes) of a tilted plane.

    The axial frame (``u = e_D``, ``v = e_H``, ``n = e_W``) rotated by ``tilt`` radians about
    the in-plane axis ``(cos azimuth, sin azimuth, 0)`` (Rodrigues' formula).
    """
    k = torch.tensor([math.cos(azimuth), math.sin(azimuth), 0.0], dtype=torch.float64)
    skew = torch.tensor([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]],
                        dtype=torch.float64)
    rot = (torch.eye(3, dtype=torch.float64) + math.sin(tilt) * skew
           + (1 - math.cos(tilt)) * skew @ skew)
    return rot.T.contiguous()  # row i = rot @ e_i


def intersection_line(*, u_a: torch.Tensor, v_a: torch.Tensor, origin_a: torch.Tensor,
                      normal_b: torch.Tensor, origin_b: torch.Tensor) -> torch.Tensor:
    """Plane B in plane A's pixel offsets: ``(alpha, beta, gamma)`` of ``alpha a + beta b + gamma = 0``.

    A's pixel at offsets ``(a, b)`` from its centre is the voxel point
    ``origin_a + a u_a + b v_a``; it lies on B where ``normal_b . (p - origin_b) = 0``.
    """
    return torch.stack([normal_b @ u_a, normal_b @ v_a, normal_b @ (origin_a - origin_b)])


def pixel_offsets(size: int) -> torch.Tensor:
    """Offsets of an ``size``-pixel edge's pixels from its centre, float64 ``(size,)``."""
    return torch.arange(size, dtype=torch.float64) - (size - 1) / 2


def line_distance(line: torch.Tensor, size: int) -> torch.Tensor:
    """Distance (pixels) of every pixel of a ``size x size`` plane to a line, float64 ``(S, S)``.

    Raises:
        ValueError: the line is degenerate (``alpha = beta = 0``: parallel planes).
    """
    alpha, beta, gamma = (float(c) for c in line)
    norm = math.hypot(alpha, beta)
    if norm < 1e-9:
        raise ValueError(f"expected a line, got coefficients {(alpha, beta, gamma)} (parallel planes)")
    off = pixel_offsets(size)
    return (alpha * off[:, None] + beta * off[None, :] + gamma).abs() / norm


def line_heatmap(line: torch.Tensor, *, size: int, sigma: float) -> torch.Tensor:
    """Gaussian heat map ``exp(-d^2 / (2 sigma^2))`` of the distance to a line, float32 ``(S, S)``."""
    d = line_distance(line, size)
    return torch.exp(-(d**2) / (2 * sigma**2)).float()


def plane_grid(*, origin: torch.Tensor, u: torch.Tensor, v: torch.Tensor, size: int,
               shape: Sequence[int]) -> torch.Tensor:
    """``grid_sample`` grid ``(S, S, 3)`` of a plane through a ``(D, H, W)`` volume.

    Pixel ``(r, c)`` samples voxel point ``origin + a u + b v`` (a, b its offsets from the
    plane centre), normalised for ``align_corners=False`` and ordered (w, h, d).
    """
    off = pixel_offsets(size)
    points = origin + off[:, None, None] * u + off[None, :, None] * v  # (S, S, 3) in (d, h, w)
    extent = torch.tensor(list(shape), dtype=torch.float64)
    normed = (2 * points + 1) / extent - 1
    return normed.flip(-1).float()


def sample_plane(volume: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Trilinear samples ``(S, S)`` of a ``(D, H, W)`` volume on a plane grid (zeros outside)."""
    out = F.grid_sample(volume[None, None].float(), grid[None, None], mode="bilinear",
                        padding_mode="zeros", align_corners=False)
    return out[0, 0, 0]


@dataclass(frozen=True)
class PlanePair:
    """Two planes in voxel coordinates: frames (rows u, v, n) and window centres."""

    frame_a: torch.Tensor
    origin_a: torch.Tensor
    frame_b: torch.Tensor
    origin_b: torch.Tensor

    @property
    def sin_angle(self) -> float:
        """Sine of the angle between the planes (0 = parallel)."""
        return float(torch.linalg.cross(self.frame_a[2], self.frame_b[2]).norm())

    def line_in_a(self) -> torch.Tensor:
        """Plane B's intersection line in plane A's pixel offsets (see ``intersection_line``)."""
        return intersection_line(u_a=self.frame_a[0], v_a=self.frame_a[1], origin_a=self.origin_a,
                                 normal_b=self.frame_b[2], origin_b=self.origin_b)


def _conv_block(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, bias=False),
        nn.GroupNorm(math.gcd(8, out_ch), out_ch),
        nn.ReLU(inplace=True),
    )


class PlaneIntersectionHead(nn.Module):
    """2D U-Net-style decoder: plane A's features + plane B's embedding -> A's heat map.

    Args:
        channels: the encoder's stage widths, finest first.
    """

    def __init__(self, channels: Sequence[int]) -> None:
        super().__init__()
        chans = tuple(channels)
        self.fuse = _conv_block(2 * chans[-1], chans[-1])
        self.up = nn.ModuleList(
            _conv_block(chans[i] + chans[i - 1], chans[i - 1]) for i in range(len(chans) - 1, 0, -1)
        )
        self.out = nn.Sequential(
            _conv_block(chans[0], chans[0]), nn.Conv2d(chans[0], 1, kernel_size=1), nn.Sigmoid()
        )

    def forward(self, feats_a: Sequence[torch.Tensor], embed_b: torch.Tensor,
                size: Sequence[int]) -> torch.Tensor:
        """``feats_a`` per stage ``(N, C_i, 1, h_i, w_i)``, ``embed_b (N, C)`` -> ``(N, 1, S, S)``."""
        if any(f.shape[2] != 1 for f in feats_a):
            raise ValueError(
                f"expected single-slice plane features (N, C, 1, h, w), got "
                f"{[tuple(f.shape) for f in feats_a]}"
            )
        maps = [f.squeeze(2) for f in feats_a]
        x = maps[-1]
        x = self.fuse(torch.cat([x, embed_b[:, :, None, None].expand(-1, -1, *x.shape[-2:])], dim=1))
        for block, skip in zip(self.up, reversed(maps[:-1]), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
        out: torch.Tensor = self.out(x)
        return out


@register_pretext("plane_intersection")
class PlaneIntersectionTask:
    """Regress where plane B cuts plane A, as a Gaussian line heat map on plane A."""

    name: ClassVar[str]
    requirements: ClassVar[TaskRequirements] = TaskRequirements(
        min_modalities=1,
        notes="a RAS-oriented 3D crop with foreground near its centre",
    )

    def __init__(self, *, cfg: PlaneIntersectionConfig, context: TaskContext) -> None:
        self.cfg = cfg
        self.context = context
        self._max_tilt = math.radians(cfg.max_tilt_deg)
        self._min_sin = math.sin(math.radians(min(MIN_ANGLE_DEG, cfg.max_tilt_deg)))

    def build_head(self, encoder: MultiModalEncoder) -> nn.Module:
        """A ``PlaneIntersectionHead`` over the encoder's stage widths."""
        return PlaneIntersectionHead(encoder.channels)

    def sample_pair(self, generator: torch.Generator, shape: Sequence[int]) -> PlanePair:
        """Two random planes through one point near the centre of a ``(D, H, W)`` crop."""
        size = min(shape)
        r = torch.rand(11, generator=generator, dtype=torch.float64)
        jitter = CENTRE_JITTER * size
        centre = (torch.tensor(list(shape), dtype=torch.float64) - 1) / 2
        point = centre + (2 * r[4:7] - 1) * jitter
        frames, origins = [], []
        for tilt_u, az_u, shift in ((r[0], r[1], r[7:9]), (r[2], r[3], r[9:11])):
            frame = plane_frame(float(tilt_u) * self._max_tilt, float(az_u) * 2 * math.pi)
            s = (2 * shift - 1) * jitter
            frames.append(frame)
            origins.append(point + s[0] * frame[0] + s[1] * frame[1])
        return PlanePair(frames[0], origins[0], frames[1], origins[1])

    def make_views(self, batch: Batch, generator: torch.Generator) -> Views:
        """Sample a plane pair per study from one present, non-empty modality.

        Returns views ``plane_a``, ``plane_b`` ``(N, 1, 1, S, S)`` and ``heatmap (N, 1, S, S)``,
        N the studies that served (the others are counted as skipped).
        """
        image, present = batch["image"], batch["present"] > 0.5
        shape = tuple(image.shape[2:])
        size = min(shape)
        planes_a: list[torch.Tensor] = []
        planes_b: list[torch.Tensor] = []
        heatmaps: list[torch.Tensor] = []
        for b in range(image.shape[0]):
            mods = [int(m) for m in present[b].nonzero().flatten() if image[b, m].gt(0).any()]
            if not mods:
                continue
            volume = image[b, mods[int(torch.randint(len(mods), (1,), generator=generator))]]
            for _ in range(MAX_ATTEMPTS):
                pair = self.sample_pair(generator, shape)
                if pair.sin_angle < self._min_sin:
                    continue
                plane_a = sample_plane(volume, plane_grid(origin=pair.origin_a, u=pair.frame_a[0],
                                                          v=pair.frame_a[1], size=size, shape=shape))
                plane_b = sample_plane(volume, plane_grid(origin=pair.origin_b, u=pair.frame_b[0],
                                                          v=pair.frame_b[1], size=size, shape=shape))
                if not (plane_a.gt(0).any() and plane_b.gt(0).any()):
                    continue
                planes_a.append(plane_a)
                planes_b.append(plane_b)
                heatmaps.append(line_heatmap(pair.line_in_a(), size=size, sigma=self.cfg.sigma))
                break
        used = len(heatmaps)
        skipped = image.shape[0] - used
        if not used:
            return Views({}, num_studies=0, skipped_studies=skipped)
        views = {
            "plane_a": torch.stack(planes_a)[:, None, None],
            "plane_b": torch.stack(planes_b)[:, None, None],
            "heatmap": torch.stack(heatmaps)[:, None],
        }
        return Views(views, num_studies=used, skipped_studies=skipped)

    def loss(self, views: Views, *, encoder: MultiModalEncoder, head: nn.Module) -> torch.Tensor:
        """MSE between the predicted and the target heat maps of plane A."""
        plane_a, plane_b = views.tensors["plane_a"], views.tensors["plane_b"]
        target = views.tensors["heatmap"]
        n = plane_a.shape[0]
        feats = encoder.forward_features(torch.cat([plane_a, plane_b], dim=0))  # GroupNorm: per sample
        embed_b = feats[-1][n:].mean(dim=(2, 3, 4))
        pred = head([f[:n] for f in feats], embed_b, size=target.shape[-2:])
        return F.mse_loss(pred.float(), target)
