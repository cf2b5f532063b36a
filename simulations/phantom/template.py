"""The MNI ICBM152 2009a brain shipped inside nilearn's wheel, as tissue fractions on a grid."""

from __future__ import annotations

import functools
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

# File names inside nilearn's package data; the 1 mm maps are 197 x 233 x 189, RAS, uint8.
_TEMPLATE_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
#: Order of the normal-tissue channels in `BrainTemplate.tissues`.
NORMAL_TISSUES: tuple[str, str, str] = ("wm", "gm", "csf")
#: Spacing limits: the template is 1 mm; above 8 mm the brain is a few voxels wide.
MIN_SPACING_MM = 1.0
MAX_SPACING_MM = 8.0


@dataclass(frozen=True)
class BrainTemplate:
    """Normal-tissue fractions of the MNI152 brain resampled to an isotropic grid.

    Attributes:
        tissues: `(3, D, H, W)` float32 fractions of WM, GM and CSF (order `NORMAL_TISSUES`);
            their sum is the soft brain mask (1 inside, partial at the edge, 0 outside).
        depth_mm: `(D, H, W)` float32 distance (mm) from each brain voxel to the outside.
        support: `(D, H, W)` bool, where any tissue fraction is non-zero (plus a margin one
            voxel wide for interpolation); warping skips everything else.
        affine: `(4, 4)` voxel-to-world (RAS, mm) matrix of the grid.
        spacing_mm: isotropic voxel size in mm.
    """

    tissues: np.ndarray
    depth_mm: np.ndarray
    support: np.ndarray
    affine: np.ndarray
    spacing_mm: float

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid shape `(D, H, W)`."""
        d, h, w = self.tissues.shape[1:]
        return int(d), int(h), int(w)


def template_dir() -> Path:
    """Folder of nilearn's packaged data files (found without importing nilearn itself).

    Raises:
        FileNotFoundError: when nilearn or its MNI152 files are not installed.
    """
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "expected the nilearn package (it ships the MNI152 template the phantom is built "
            "from), got no importable nilearn; fix: install fedmm's dependencies "
            "(pip install -e .)"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    missing = [name for name in _TEMPLATE_FILES.values() if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"expected nilearn's MNI152 2009a maps in {folder}, got {len(missing)} missing "
            f"({', '.join(missing)}); fix: reinstall nilearn==0.13.1 from its wheel"
        )
    return folder


def _load_1mm() -> tuple[np.ndarray, np.ndarray]:
    """Tissue fractions `(3, X, Y, Z)` at 1 mm and their affine `(4, 4)`."""
    folder = template_dir()
    images = {key: nib.Nifti1Image.from_filename(folder / name) for key, name in _TEMPLATE_FILES.items()}
    affine = np.asarray(images["t1"].affine, dtype=np.float64)
    maps = {key: np.asarray(img.dataobj, dtype=np.float32) / np.float32(255.0) for key, img in images.items()}
    # The T1 template is already skull-stripped: non-zero exactly where the brain, its
    # ventricles and its sulcal CSF are, so it serves as the brain mask.
    mask = (maps["t1"] > 0).astype(np.float32)
    wm = maps["wm"] * mask
    gm = maps["gm"] * mask
    # Everything inside the brain that is neither GM nor WM is CSF (ventricles, sulci).
    csf = np.clip(mask - gm - wm, 0.0, 1.0)
    return np.stack([wm, gm, csf]), affine


def grid_shape(spacing_mm: float, shape_1mm: tuple[int, ...] = (197, 233, 189)) -> tuple[int, ...]:
    """Shape of the template grid at `spacing_mm` (2 mm gives `(98, 116, 94)`)."""
    return tuple(math.floor(n / spacing_mm + 1e-6) for n in shape_1mm)


def _downsample(vol: np.ndarray, spacing_mm: float) -> np.ndarray:
    """Area-average `(C, X, Y, Z)` 1 mm volumes to voxels of `spacing_mm`.

    Averaging (not point sampling) keeps partial-volume fractions correct at tissue edges.
    """
    out_shape = grid_shape(spacing_mm, vol.shape[1:])
    step = round(spacing_mm)
    if abs(spacing_mm - step) < 1e-6:
        if step == 1:
            return vol.copy()
        d, h, w = out_shape
        cropped = vol[:, : d * step, : h * step, : w * step]
        blocks = cropped.reshape(vol.shape[0], d, step, h, step, w, step)
        return blocks.mean(axis=(2, 4, 6), dtype=np.float32)
    # Non-integer spacing: a Gaussian with the FWHM of the new voxel, then trilinear sampling
    # at the new voxel centres.
    sigma = math.sqrt(spacing_mm**2 - 1.0) / 2.355
    grids = np.meshgrid(
        *[np.arange(n) * spacing_mm + (spacing_mm - 1.0) / 2.0 for n in out_shape], indexing="ij"
    )
    coords = np.stack(grids)
    out = np.empty((vol.shape[0], *out_shape), dtype=np.float32)
    for c in range(vol.shape[0]):
        smooth = ndi.gaussian_filter(vol[c], sigma)
        out[c] = ndi.map_coordinates(smooth, coords, order=1, mode="constant", cval=0.0)
    return out


@functools.lru_cache(maxsize=4)
def _load_cached(spacing_key: float) -> BrainTemplate:
    tissues_1mm, affine_1mm = _load_1mm()
    s = spacing_key
    tissues = _downsample(tissues_1mm, s)
    # The 1 mm mask is one connected piece without holes, so thresholding the soft mask at
    # one half gives a clean brain at any spacing.
    brain = tissues.sum(axis=0) >= 0.5
    depth = ndi.distance_transform_edt(brain, sampling=s).astype(np.float32)
    support = ndi.binary_dilation(tissues.sum(axis=0) > 0, structure=np.ones((3, 3, 3), bool))
    # Voxel i of the new grid covers 1 mm voxels [i*s, (i+1)*s), centred at i*s + (s-1)/2.
    scale = np.diag([s, s, s, 1.0])
    scale[:3, 3] = (s - 1.0) / 2.0
    affine = affine_1mm @ scale
    for arr in (tissues, depth, support, affine):
        arr.setflags(write=False)  # shared by every subject through the cache
    return BrainTemplate(tissues=tissues, depth_mm=depth, support=support, affine=affine, spacing_mm=s)


def load_template(spacing_mm: float = 2.0) -> BrainTemplate:
    """Load the MNI152 tissue fractions at `spacing_mm` (cached per process).

    Args:
        spacing_mm: isotropic voxel size in mm, from 1 to 8 (2 mm gives `(98, 116, 94)`).

    Returns:
        The template; its arrays are read-only because they are shared through the cache.

    Raises:
        ValueError: for a spacing outside [1, 8] mm.
    """
    if not (MIN_SPACING_MM <= spacing_mm <= MAX_SPACING_MM) or not math.isfinite(spacing_mm):
        raise ValueError(
            f"expected spacing_mm in [{MIN_SPACING_MM}, {MAX_SPACING_MM}] (the template is 1 mm), "
            f"got {spacing_mm}; fix: pass e.g. spacing_mm=2.0"
        )
    return _load_cached(round(float(spacing_mm), 6))
