"""Pretext loss per site and round, train and held-out, from metrics.json (data and plot)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib import colormaps
from matplotlib.figure import Figure

from simulations.report.png_output import save_figure

#: Per-site loss keys in metrics.json (server/protocol.py writes them as the sites send them).
TRAIN_KEY = "train-loss"
EVAL_KEY = "eval-loss"


def _node_order(node_id: str) -> tuple[int, int | str]:
    # Flower node ids are integers sent as strings: sort them as numbers.
    return (0, int(node_id)) if node_id.isdigit() else (1, node_id)


def site_labels(node_ids: Iterable[str]) -> dict[str, str]:
    """Node id -> ``"site k"``, k = 1..N in ascending (numeric) node-id order."""
    ordered = sorted(set(node_ids), key=_node_order)
    return {node: f"site {k}" for k, node in enumerate(ordered, start=1)}


@dataclass(frozen=True)
class LossSeries:
    """Loss per round for every site and for the aggregate; None where nothing was reported.

    Attributes:
        rounds: the round numbers, ascending.
        labels: node id -> ``"site k"``.
        train, held_out: ``"site k"`` -> one value per round.
        train_mean, held_out_mean: the server's example-weighted aggregate per round.
    """

    rounds: tuple[int, ...]
    labels: dict[str, str]
    train: dict[str, tuple[float | None, ...]]
    held_out: dict[str, tuple[float | None, ...]]
    train_mean: tuple[float | None, ...]
    held_out_mean: tuple[float | None, ...]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def loss_series(metrics: Mapping[str, Any]) -> LossSeries:
    """Collect the losses of ``metrics.json``'s rounds (a site absent from a round gives None).

    Raises:
        ValueError: ``metrics`` has no rounds (nothing to plot).
    """
    entries = sorted((r for r in metrics.get("rounds") or [] if isinstance(r, Mapping)),
                     key=lambda r: int(r.get("round", 0)))
    if not entries:
        raise ValueError("expected metrics.json with at least one finished round, got none")
    nodes = [str(node) for r in entries for phase in ("train", "evaluate")
             for node in ((r.get(phase) or {}).get("sites") or {})]
    labels = site_labels(nodes)

    def per_site(phase: str, key: str) -> dict[str, tuple[float | None, ...]]:
        return {
            label: tuple(_number((((r.get(phase) or {}).get("sites") or {}).get(node) or {}).get(key))
                         for r in entries)
            for node, label in labels.items()
        }

    return LossSeries(
        rounds=tuple(int(r.get("round", i + 1)) for i, r in enumerate(entries)),
        labels=labels,
        train=per_site("train", TRAIN_KEY),
        held_out=per_site("evaluate", EVAL_KEY),
        train_mean=tuple(_number((r.get("train") or {}).get("loss")) for r in entries),
        held_out_mean=tuple(_number((r.get("evaluate") or {}).get("loss")) for r in entries),
    )


def plot_losses(series: LossSeries, png: Path) -> Path:
    """Two panels, train and held-out: one line per site, the aggregate in black.

    Returns:
        ``png``.
    """
    fig = Figure(figsize=(8.0, 3.3))
    axes = fig.subplots(1, 2, sharey=True)
    # Node ids carry no site-folder order, so these colours deliberately differ from the
    # folder colours of the other figures (tab10) to avoid suggesting a correspondence.
    cmap = colormaps["Dark2"]
    colours = [cmap(i % cmap.N) for i in range(len(series.labels))]
    panels = (("train (local steps)", series.train, series.train_mean),
              ("held-out (site eval split)", series.held_out, series.held_out_mean))
    for ax, (title, per_site, mean) in zip(axes, panels, strict=True):
        for colour, (label, values) in zip(colours, per_site.items(), strict=True):
            ax.plot(series.rounds, [math.nan if v is None else v for v in values], marker="o",
                    markersize=3.5, linewidth=1.2, color=colour, label=label)
        ax.plot(series.rounds, [math.nan if v is None else v for v in mean], color="black",
                linewidth=2.2, linestyle="--", marker="s", markersize=4, label="all sites (weighted)")
        ax.set_title(f"pretext loss, {title}", fontsize=9)
        ax.set_xlabel("round", fontsize=8)
        ax.set_xticks(list(series.rounds))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("loss", fontsize=8)
    axes[1].legend(fontsize=7, loc="upper right", frameon=False)
    fig.tight_layout()
    return save_figure(fig, png)
