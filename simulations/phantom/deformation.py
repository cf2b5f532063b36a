"""Random anatomy: a small global scaling plus a smooth displacement field per subject."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from simulations.phantom.fields import smooth_random_field

# Head sizes vary by about 5 % between adults; local shape by a few millimetres.
SCALE_SD = 0.05
AXIS_SCALE_SD = 0.025
SCALE_LIMITS = (0.88, 1.12)
DISPLACEMENT_SD_MM = 2.5
DISPLACEMENT_CORRELATION_MM = 30.0


@dataclass(frozen=True)
class DeformationParams:
    """Sampled parameters of one subject's warp (TorchIO style: sample, then apply).

    Attributes:
        scale: `(3,)` per-axis scaling of the subject relative to the template.
        centre_vox: `(3,)` voxel about which the scaling acts (the brain's centre).
        displacement_vox: `(3, D, H, W)` float32 smooth displacement in voxels.
    """

    scale: np.ndarray
    centre_vox: np.ndarray
    displacement_vox: np.ndarray


def sample_deformation(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    *,
    spacing_mm: float,
    centre_vox: np.ndarray,
) -> DeformationParams:
    """Draw a random subject warp.

    Args:
        rng: source of randomness.
        shape: grid `(D, H, W)`.
        spacing_mm: voxel size in mm.
        centre_vox: `(3,)` centre of the scaling in voxels.

    Returns:
        The sampled parameters.
    """
    overall = rng.normal(0.0, SCALE_SD)
    scale = np.exp(overall + rng.normal(0.0, AXIS_SCALE_SD, size=3))
    scale = np.clip(scale, *SCALE_LIMITS)
    field = smooth_random_field(
        rng, shape, spacing_mm=spacing_mm, correlation_mm=DISPLACEMENT_CORRELATION_MM, n_fields=3
    )
    field *= np.float32(DISPLACEMENT_SD_MM / spacing_mm)
    return DeformationParams(
        scale=scale, centre_vox=np.asarray(centre_vox, dtype=np.float64), displacement_vox=field
    )


def source_coordinates(params: DeformationParams) -> np.ndarray:
    """Template voxel coordinates sampled by each subject voxel.

    The subject voxel `x` shows template point `c + (x - c) / s + u(x)`: a subject larger
    than the template (`s > 1`) samples a shrunken template neighbourhood.

    Returns:
        `(3, D, H, W)` float32 coordinates in template voxels.
    """
    shape = params.displacement_vox.shape[1:]
    coords = np.empty((3, *shape), dtype=np.float32)
    for axis in range(3):
        grid = np.arange(shape[axis], dtype=np.float32)
        c = np.float32(params.centre_vox[axis])
        line = c + (grid - c) / np.float32(params.scale[axis])
        view = [1, 1, 1]
        view[axis] = shape[axis]
        coords[axis] = line.reshape(view) + params.displacement_vox[axis]
    return coords


def warp(volumes: np.ndarray, coords: np.ndarray, *, support: np.ndarray | None = None) -> np.ndarray:
    """Resample template volumes at `coords` with trilinear interpolation.

    Args:
        volumes: `(C, D, H, W)` template-space volumes (e.g. tissue fractions).
        coords: `(3, D, H, W)` template voxel coordinates from `source_coordinates`.
        support: optional `(D, H, W)` bool template mask outside which every volume is 0
            (with a one-voxel margin); only voxels that sample inside it are interpolated,
            which skips the ~75 % of the grid that is background.

    Returns:
        `(C, D, H, W)` float32 warped volumes; outside the template they are 0.
    """
    out = np.zeros((volumes.shape[0], *coords.shape[1:]), dtype=np.float32)
    if support is None:
        active = np.ones(coords.shape[1:], dtype=bool)
    else:
        idx = np.rint(coords).astype(np.intp)
        inside = np.ones(coords.shape[1:], dtype=bool)
        for axis in range(3):
            inside &= (idx[axis] >= 0) & (idx[axis] < support.shape[axis])
            np.clip(idx[axis], 0, support.shape[axis] - 1, out=idx[axis])
        active = inside & support[idx[0], idx[1], idx[2]]
    points = coords[:, active]
    for c in range(volumes.shape[0]):
        # Linear interpolation keeps fractions in [0, 1] and their sum at most 1.
        out[c][active] = ndi.map_coordinates(volumes[c], points, order=1, mode="constant", cval=0.0)
    return out
