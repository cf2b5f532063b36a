"""A PNG contact sheet of a phantom: one row per site, the four contrasts and the labels."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import nibabel as nib
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from simulations.phantom.manifest import (
    MANIFEST_NAME,
    PhantomSiteRecord,
    PhantomSubjectRecord,
    read_manifest,
    subject_file,
)
from simulations.phantom.signal import CONTRASTS

#: More rows than this make an unreadable, heavy image; later sites are left out (and said so).
MAX_ROWS: Final = 8
MAX_BYTES: Final = 300_000
#: Display window top: high enough that edema on FLAIR keeps its gradient.
WINDOW_PERCENTILE: Final = 99.8
_TITLES: Final = {"t1": "T1", "t1ce": "T1ce", "t2": "T2", "flair": "FLAIR"}
# BraTS colours: 1 core red, 2 edema green, 4 enhancing yellow (index = label value).
_LABEL_CMAP: Final = ListedColormap(
    [(0, 0, 0, 0), (0.9, 0.1, 0.1, 0.75), (0.1, 0.8, 0.2, 0.55), (0, 0, 0, 0), (1, 0.9, 0, 0.8)]
)


def _pick_subject(site: PhantomSiteRecord) -> PhantomSubjectRecord:
    """The first subject with a tumour, else the first subject."""
    for subj in site.subjects:
        if subj.tumour_centre_voxel is not None:
            return subj
    return site.subjects[0]


def _load(path: Path) -> np.ndarray:
    return np.asarray(nib.Nifti1Image.from_filename(path).dataobj, dtype=np.float32)


def _draw(fig: Figure, root: Path, sites: list[PhantomSiteRecord], shape: tuple[int, ...]) -> None:
    axes = fig.subplots(len(sites), len(CONTRASTS) + 1, squeeze=False)
    for row, site in enumerate(sites):
        subj = _pick_subject(site)
        centre = subj.tumour_centre_voxel
        z = centre[2] if centre is not None else shape[2] // 2
        vols = [_load(subject_file(root, site.name, subj.id, c)) for c in CONTRASTS]
        seg = _load(subject_file(root, site.name, subj.id, "seg")).astype(np.int64)
        # Crop to the brain so the panels show anatomy, not empty background.
        brain = np.argwhere(vols[0].max(axis=2) > 0)
        lo, hi = (brain.min(axis=0), brain.max(axis=0) + 1) if brain.size else ((0, 0), shape[:2])
        crop = (slice(int(lo[0]), int(hi[0])), slice(int(lo[1]), int(hi[1])), z)
        for col, vol in enumerate(vols):
            ax = axes[row, col]
            inside = vol[vol > 0]
            vmax = float(np.percentile(inside, WINDOW_PERCENTILE)) if inside.size else 1.0
            ax.imshow(
                vol[crop].T,
                cmap="gray",
                origin="lower",
                vmin=0.0,
                vmax=vmax,
                interpolation="nearest",
            )
            # Windows are per image (for visibility); the level shows the scanners' gains.
            ax.text(0.02, 0.02, f"window {vmax:.0f}", transform=ax.transAxes, color="yellow", fontsize=6)
            if row == 0:
                ax.set_title(_TITLES[CONTRASTS[col]], fontsize=9)
        ax = axes[row, -1]
        flair = vols[CONTRASTS.index("flair")]
        inside = flair[flair > 0]
        ax.imshow(
            flair[crop].T,
            cmap="gray",
            origin="lower",
            vmin=0.0,
            vmax=float(np.percentile(inside, WINDOW_PERCENTILE)) if inside.size else 1.0,
            interpolation="nearest",
        )
        ax.imshow(
            np.clip(seg[crop].T, 0, 4),
            cmap=_LABEL_CMAP,
            vmin=0,
            vmax=4,
            origin="lower",
            interpolation="nearest",
        )
        if row == 0:
            ax.set_title("labels 1/2/4", fontsize=9)
        axes[row, 0].set_ylabel(f"{site.name}\n{site.profile.name}\n{subj.id} {subj.grade}", fontsize=7)
        for a in axes[row]:
            a.set_xticks([])
            a.set_yticks([])


def write_preview(root: Path, png: Path) -> Path:
    """Draw one axial slice per site through its first tumour, in every contrast.

    Rows are sites (folder, scanner profile, subject and grade on the left); columns are T1,
    T1ce, T2, FLAIR and the labels over FLAIR (red core, green edema, yellow enhancing).

    Args:
        root: a phantom folder (with `manifest.json`).
        png: where to write the PNG (kept under 300 KB).

    Returns:
        `png`.

    Raises:
        ValueError: when `root` holds no readable phantom manifest.
    """
    root, png = Path(root), Path(png)
    manifest = read_manifest(root)
    if manifest is None:
        raise ValueError(
            f"expected a phantom with {MANIFEST_NAME} in {root}, got none (or an unreadable "
            "one); fix: run `fedmm phantom --out DIR` first, then preview DIR"
        )
    sites = manifest.sites[:MAX_ROWS]
    width_in, row_in = 7.5, 1.75
    fig = Figure(figsize=(width_in, row_in * len(sites) + 0.5))
    _draw(fig, root, sites, manifest.shape)
    title = f"fedmm phantom: {len(manifest.sites)} site(s), {manifest.spacing_mm:g} mm"
    if len(manifest.sites) > MAX_ROWS:
        title += f" (first {MAX_ROWS} shown)"
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(
        left=0.12,
        right=0.99,
        top=1 - 0.45 / (row_in * len(sites) + 0.5),
        bottom=0.01,
        wspace=0.03,
        hspace=0.06,
    )
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_name(f".{png.stem}.tmp{os.getpid()}.png")
    # Noisy images compress poorly: step the resolution down until the file is modest.
    for dpi in (110, 90, 72, 60):
        fig.savefig(tmp, dpi=dpi)
        if tmp.stat().st_size <= MAX_BYTES:
            break
    os.replace(tmp, png)
    return png
