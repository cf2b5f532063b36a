"""The data preview: one row per site, one column per modality, a mid slice through the brain."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from simulations.phantom.manifest import read_manifest
from simulations.phantom.preview import write_preview
from simulations.report.png_output import save_figure
from simulations.report.site_data import ReportSite, first_study, mid_axial_slice

#: Rows beyond this make an unreadable, heavy image; later sites are left out (and said so).
MAX_ROWS = 8
_TITLES = {"t1": "T1", "t1ce": "T1ce", "t2": "T2", "flair": "FLAIR"}


def is_phantom(data_root: Path) -> bool:
    """Whether ``data_root`` is a generated phantom (it has a readable manifest)."""
    return read_manifest(Path(data_root)) is not None


def write_data_preview(
    png: Path, *, data_root: Path, sites: Sequence[ReportSite], modalities: Sequence[str]
) -> str:
    """Draw the preview and return a one-line caption saying what it shows.

    A phantom gets its own contact sheet (``simulations/phantom/preview.py``: the slice
    through each site's first tumour, with labels); any other data root gets a generic
    grid from each site's first study: the mid axial slice of every modality after the
    run's preprocessing (foreground percentiles mapped to 0..1, shown with the window 0..1).

    Args:
        png: where to write the PNG.
        data_root: the run's data folder.
        sites: the opened sites (used for the generic grid).
        modalities: the run's modalities, in column order.

    Raises:
        ValueError: not a phantom and no site could be opened.
    """
    if is_phantom(data_root):
        write_preview(Path(data_root), png)
        return ("The phantom's own preview: per site (folder, scanner profile, subject), the axial "
                "slice through its first tumour in every contrast, raw intensities with a window per "
                "image, and the tumour labels over FLAIR.")
    if not sites:
        raise ValueError("expected at least one readable site for the generic preview, got none")
    shown = list(sites)[:MAX_ROWS]
    fig = Figure(figsize=(1.6 * len(modalities) + 0.6, 1.6 * len(shown) + 0.4))
    axes = fig.subplots(len(shown), len(modalities), squeeze=False)
    for row, site in enumerate(shown):
        sample = first_study(site.dataset)
        image = np.asarray(sample["image"], dtype=np.float32)
        present = np.asarray(sample["present"], dtype=np.float32)
        for col, modality in enumerate(modalities):
            ax = axes[row, col]
            if present[col] > 0:
                ax.imshow(mid_axial_slice(image[col]), cmap="gray", vmin=0.0, vmax=1.0, origin="lower",
                          interpolation="nearest")
            else:
                ax.text(0.5, 0.5, "missing", ha="center", va="center", fontsize=8, color="grey",
                        transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(modality_title(modality), fontsize=9)
        axes[row, 0].set_ylabel(f"{site.name}\n{sample.get('study_id', '')}", fontsize=7)
    title = f"{len(sites)} site(s), first study each"
    if len(sites) > MAX_ROWS:
        title += f" (first {MAX_ROWS} shown)"
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, png)
    return ("Each site's first study (by id) after the run's preprocessing: the mid axial slice of "
            "every modality, foreground scaled to 0..1 between percentiles, window 0..1.")


def modality_title(modality: str) -> str:
    """How a canonical modality name is written in figure titles (``t1ce`` -> ``T1ce``)."""
    return _TITLES.get(modality, modality.upper())
