"""Saving a report figure as a modest PNG (Agg, no pyplot state, stepped-down resolution)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from matplotlib.figure import Figure

#: A report PNG stays under this; noisy images step the resolution down until they fit.
MAX_PNG_BYTES: Final = 250_000
DPI_STEPS: Final = (100, 90, 72, 60)


def save_figure(fig: Figure, png: Path, *, max_bytes: int = MAX_PNG_BYTES) -> Path:
    """Write ``fig`` to ``png`` at the highest DPI of :data:`DPI_STEPS` that fits ``max_bytes``.

    ``Figure`` is used directly (not pyplot), so matplotlib renders with Agg and keeps no
    global figure state. The file is written under a temporary name and renamed, so a
    reader never sees half a PNG.

    Returns:
        ``png``.
    """
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_name(f".{png.stem}.tmp{os.getpid()}.png")
    for dpi in DPI_STEPS:
        fig.savefig(tmp, dpi=dpi)
        if tmp.stat().st_size <= max_bytes:
            break
    os.replace(tmp, png)
    return png
