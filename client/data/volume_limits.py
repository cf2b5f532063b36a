"""Caps on a volume's size, checked from its header before any voxel is read.

Two bounds protect a site's memory from a damaged or hostile header:

* **after resampling**: the grid ``Spacingd`` will produce at ``data.spacing_mm`` must hold at
  most ``data.max_voxels`` voxels (a 32^3 file whose header claims 50 mm voxels would
  otherwise make a 2 mm pipeline allocate ~7.5 GB);
* **the raw read**: a file is read whole, at its own resolution, before it is resampled, so
  it may hold at most ``RAW_FACTOR * data.max_voxels`` values (every channel of a 4D file,
  every slice of a DICOM series): a grid twice as fine per axis as the largest accepted
  output. At the default (256^3) that is 2^27 = 134 M values, about 0.5 GB as float32; a
  0.5 mm whole-head 7 T scan (448 x 448 x 352 = 71 M) fits. A header claiming more (a
  gzip bomb, a corrupted dimension) is refused before reading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import nibabel as nib
import numpy as np
from monai.data.utils import compute_shape_offset, zoom_affine

from client.data.adapter import DataProblem, DataProblemError
from client.data.volume_header import VolumeHeader
from shared.config import DataConfig

__all__ = ["RAW_FACTOR", "VolumeLimits", "resampled_shape"]

#: The raw read may hold this many times ``max_voxels`` values (2x finer per axis).
RAW_FACTOR = 8


def resampled_shape(shape: tuple[int, int, int], affine: np.ndarray, *, spacing_mm: float) -> tuple[int, ...]:
    """The spatial shape the pipeline's ``Orientationd("RAS")`` + ``Spacingd`` give a grid.

    Computed with MONAI's own functions (``zoom_affine`` and ``compute_shape_offset``, as
    ``Spacing`` calls them) on the affine after reorientation, without touching voxels.
    """
    affine = np.asarray(affine, dtype=np.float64)
    ornt = nib.orientations.ornt_transform(nib.io_orientation(affine), nib.orientations.axcodes2ornt("RAS"))
    oriented = affine @ nib.orientations.inv_ornt_aff(ornt, shape)
    oriented_shape = tuple(int(shape[int(axis)]) for axis in np.argsort(ornt[:, 0]))
    target = zoom_affine(oriented, np.full(3, float(spacing_mm)), diagonal=False)
    out, _ = compute_shape_offset(oriented_shape, oriented, target)
    return tuple(int(v) for v in out)


@dataclass(frozen=True)
class VolumeLimits:
    """How large a volume a site reads (see the module docstring for the two bounds)."""

    spacing_mm: float
    max_voxels: int

    @classmethod
    def from_config(cls, data: DataConfig) -> VolumeLimits:
        return cls(spacing_mm=data.spacing_mm, max_voxels=data.max_voxels)

    @classmethod
    def default(cls) -> VolumeLimits:
        """The limits of a default run (for readers called outside a run, e.g. inspection)."""
        return cls.from_config(DataConfig())

    @property
    def max_raw_values(self) -> int:
        return RAW_FACTOR * self.max_voxels

    def check(self, header: VolumeHeader) -> None:
        """Refuse a volume whose raw read or resampled grid is too large.

        Raises:
            DataProblemError: naming the file, the sizes and the setting to change.
        """
        if header.elements > self.max_raw_values:
            raise DataProblemError(DataProblem(
                path=header.path,
                problem=f"expected at most {self.max_raw_values:,} values in the file ({RAW_FACTOR} x "
                f"data.max_voxels, read whole before resampling), got a {header.format} header that "
                f"claims shape {header.shape} = {header.elements:,}.",
                fix="if the volume is genuine, crop or downsample it, or raise data.max_voxels (and "
                "the site's own limit); a header claiming an absurd grid means a damaged or "
                "hostile file: remove it."))
        with np.errstate(all="ignore"):
            shape = resampled_shape(header.spatial_shape, header.affine, spacing_mm=self.spacing_mm)
        voxels = math.prod(shape)
        if voxels > self.max_voxels or voxels <= 0:
            zooms = tuple(round(z, 3) for z in header.zooms)
            raise DataProblemError(DataProblem(
                path=header.path,
                problem=f"expected at most data.max_voxels = {self.max_voxels:,} voxels after "
                f"resampling to {self.spacing_mm:g} mm, got {shape} = {voxels:,} from a "
                f"{header.spatial_shape} grid of {zooms} mm voxels.",
                fix="check the voxel size in the header (a wrong unit or spacing inflates the "
                "volume); if it is genuine, crop the volume or raise data.spacing_mm or "
                "data.max_voxels."))
