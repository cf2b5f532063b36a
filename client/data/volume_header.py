"""What a volume's headers say before any voxel is read: format, grid, voxel-to-RAS affine."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from client.data.adapter import DataProblem, DataProblemError

__all__ = ["VolumeHeader", "check_geometry"]


@dataclass(frozen=True)
class VolumeHeader:
    """One volume as its headers describe it.

    Attributes:
        path: the file (or DICOM series folder).
        format: a readable name, e.g. ``"NIfTI-1"``, ``"MGH"``, ``"DICOM series"``.
        shape: ``(X, Y, Z)`` or ``(X, Y, Z, C)`` as it will be read (trailing singleton axes
            beyond the third dropped, a single 2D slice given Z = 1).
        affine: ``(4, 4)`` voxel -> RAS mm.
        notes: facts worth telling the operator that do not stop the file from loading
            (e.g. which of a NIfTI's qform and sform was used).
    """

    path: Path
    format: str
    shape: tuple[int, ...]
    affine: np.ndarray = field(repr=False)
    notes: tuple[str, ...] = ()

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        x, y, z = self.shape[:3]
        return x, y, z

    @property
    def elements(self) -> int:
        """Values a whole read allocates (every channel of a 4D file)."""
        return math.prod(self.shape)

    @property
    def zooms(self) -> tuple[float, float, float]:
        """Voxel edge lengths in mm (column norms of the affine)."""
        x, y, z = (float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))
        return x, y, z


def check_geometry(path: Path, *, fmt: str, shape: tuple[int, ...], affine: np.ndarray) -> None:
    """Refuse a header whose grid or affine no resampling can use.

    Raises:
        DataProblemError: a non-positive dimension, or an affine that is not finite and
            invertible (zero or NaN voxel sizes).
    """
    if any(int(s) < 1 for s in shape):
        raise DataProblemError(DataProblem(
            path=path, problem=f"expected every dimension of the {fmt} grid to be at least 1, got "
            f"shape {tuple(int(s) for s in shape)}.",
            fix="re-export the volume; a zero-sized axis holds no image."))
    linear = np.asarray(affine, dtype=np.float64)[:3, :3]
    finite = bool(np.isfinite(np.asarray(affine, dtype=np.float64)).all())
    if not finite or abs(float(np.linalg.det(linear))) < 1e-12:
        zooms = np.linalg.norm(linear, axis=0) if finite else "not finite"
        raise DataProblemError(DataProblem(
            path=path, problem=f"expected a voxel-to-world affine with finite, non-zero voxel sizes in "
            f"the {fmt} header, got one that cannot be inverted (voxel sizes {zooms}).",
            fix="re-export the volume from the scanner or converter with its geometry "
            "(for NIfTI: a valid qform/sform or pixdim)."))
