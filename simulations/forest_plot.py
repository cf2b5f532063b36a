"""One panel of a forest plot: per row, the seeds as dots and the mean with its 95 % interval."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def draw_forest(ax: Any, rows: Sequence[dict[str, Any] | None], *,
                marks: Sequence[float] = (0.0,)) -> None:
    """Draw paired differences (each a ``paired_stats.summary``) on a matplotlib axis, one
    row each from the top; a None row stays empty. ``marks``: vertical reference lines
    (0 solid, any other dashed)."""
    for y, d in enumerate(rows):
        if d is None:
            continue
        ax.scatter(d["per_seed"], [y] * len(d["per_seed"]), s=12, color="0.6", zorder=2)
        if d["ci95"]:
            ax.plot(d["ci95"], [y, y], color="C0", lw=2, zorder=3)
        ax.scatter([d["mean"]], [y], color="C0", marker="D", s=30, zorder=4)
    for x in marks:
        ax.axvline(x, color="k" if x == 0 else "C3", lw=0.8, ls="-" if x == 0 else "--")
    ax.set_ylim(len(rows) - 0.5, -0.5)
