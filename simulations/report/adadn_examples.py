"""AdaDN examples: one image per site before and after denormalization to another site's statistics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from shared.adadn import adadn
from shared.stats_schema import ModalityStats, StatsPool
from simulations.report.data_preview import modality_title
from simulations.report.png_output import save_figure
from simulations.report.site_data import ReportSite, first_study, mid_axial_slice


@dataclass(frozen=True)
class AdadnTarget:
    """A pool entry chosen as the target appearance, and how to name it."""

    stats: ModalityStats
    label: str


@dataclass(frozen=True)
class AdadnExample:
    """One study's mid slice in one modality, before and after AdaDN (whole-volume moments).

    Attributes:
        before, after: ``(H, W)`` display slices.
        fg_before, fg_after: the volume's foreground intensities before and after.
    """

    site: str
    study_id: str
    modality: str
    src_mean: float
    src_std: float
    target: AdadnTarget
    before: np.ndarray
    after: np.ndarray
    fg_before: np.ndarray
    fg_after: np.ndarray


def _same(a: ModalityStats, b: ModalityStats) -> bool:
    return abs(a.mean - b.mean) < 1e-9 and abs(a.std - b.std) < 1e-9


def choose_target(
    entries: Sequence[ModalityStats], *, own: ModalityStats | None, src_mean: float,
    released: Mapping[str, ModalityStats],
) -> AdadnTarget | None:
    """Pick the pool entry whose mean is farthest from the study's, never the site's own release.

    The pool is anonymous and shuffled; in a simulation each site's own release is still
    on disk, which is how ``own`` and ``released`` (site name -> its release of this
    modality) are known. The farthest mean makes the change visible.

    Returns:
        The target, or None when the pool holds no other site's entry for the modality.
    """
    candidates = [(i, e) for i, e in enumerate(entries) if own is None or not _same(e, own)]
    if not candidates:
        return None
    index, entry = max(candidates, key=lambda c: (abs(c[1].mean - src_mean), -c[0]))
    owner = next((name for name, stats in released.items() if _same(stats, entry)), None)
    label = (f"{owner}'s pooled statistics" if owner is not None
             else f"pool entry {index + 1} of {len(entries)}")
    return AdadnTarget(stats=entry, label=label)


def build_example(
    site: ReportSite, *, pool: StatsPool, modalities: Sequence[str],
    released: Mapping[str, Mapping[str, ModalityStats]],
) -> AdadnExample:
    """Denormalize the site's first study towards another site's pooled statistics.

    The modality is the first of ``modalities`` that the study has and the pool holds for
    another site. The transform is ``shared.adadn.adadn`` with the study's foreground
    moments as the source, exactly as in training (docs/methods.md).

    Args:
        site: the opened site.
        pool: the server's statistics pool.
        modalities: the run's modalities, in channel order.
        released: site name -> modality -> that site's released statistics (may be empty).

    Raises:
        ValueError: no modality of the study has another site's entry in the pool.
    """
    sample = first_study(site.dataset)
    image = np.asarray(sample["image"], dtype=np.float32)
    present = np.asarray(sample["present"], dtype=np.float32)
    fg_mean = np.asarray(sample["fg_mean"], dtype=np.float32)
    fg_std = np.asarray(sample["fg_std"], dtype=np.float32)
    own = released.get(site.name, {})
    for channel, modality in enumerate(modalities):
        if present[channel] <= 0:
            continue
        others = {name: stats[modality] for name, stats in released.items()
                  if name != site.name and modality in stats}
        target = choose_target(pool.targets(modality), own=own.get(modality),
                               src_mean=float(fg_mean[channel]), released=others)
        if target is None:
            continue
        volume = torch.from_numpy(image[channel]).reshape(1, 1, *image.shape[1:])
        moved = adadn(
            volume,
            src_mean=torch.tensor([float(fg_mean[channel])]),
            src_std=torch.tensor([float(fg_std[channel])]),
            tgt_mean=torch.tensor([target.stats.mean]),
            tgt_std=torch.tensor([target.stats.std]),
        )[0, 0].numpy()
        fg = image[channel] != 0
        return AdadnExample(
            site=site.name, study_id=str(sample.get("study_id", "")), modality=modality,
            src_mean=float(fg_mean[channel]), src_std=float(fg_std[channel]), target=target,
            before=mid_axial_slice(image[channel]), after=mid_axial_slice(moved),
            fg_before=image[channel][fg], fg_after=moved[fg],
        )
    raise ValueError(f"expected another site's pooled statistics for one of {site.name}'s "
                     f"modalities {list(modalities)}, got none in the pool")


def plot_adadn_examples(examples: Sequence[AdadnExample], png: Path) -> Path:
    """Rows are sites: before, after (same grey window) and both foreground histograms.

    Returns:
        ``png``.
    """
    if not examples:
        raise ValueError("expected at least one AdaDN example to plot, got none")
    fig = Figure(figsize=(7.6, 1.9 * len(examples) + 0.3))
    axes = fig.subplots(len(examples), 3, squeeze=False,
                        gridspec_kw={"width_ratios": [1, 1, 1.5]})
    for row, ex in enumerate(examples):
        # One window per row, shared by before and after, so the change in level shows.
        top = max(1.0, float(np.percentile(np.concatenate([ex.fg_before, ex.fg_after]), 99.5)))
        for col, (img, mean, std) in enumerate(((ex.before, ex.src_mean, ex.src_std),
                                                (ex.after, ex.target.stats.mean, ex.target.stats.std))):
            ax = axes[row, col]
            ax.imshow(img, cmap="gray", vmin=0.0, vmax=top, origin="lower", interpolation="nearest")
            ax.set_xlabel(f"foreground mean {mean:.2f}, sd {std:.2f}", fontsize=6.5, labelpad=2)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row, 0].set_ylabel(f"{ex.site}\n{ex.study_id}\n{modality_title(ex.modality)}", fontsize=7)
        axes[row, 0].set_title("before (own appearance)" if row == 0 else "", fontsize=8)
        axes[row, 1].set_title(f"after: towards {ex.target.label}", fontsize=7)
        ax = axes[row, 2]
        bins = np.linspace(0.0, top, 41)
        ax.hist(ex.fg_before, bins=bins, density=True, histtype="step", color="0.35", linewidth=1.2,
                label="before")
        ax.hist(ex.fg_after, bins=bins, density=True, histtype="step", color="tab:orange",
                linewidth=1.4, label="after")
        ax.set_yticks([])
        ax.tick_params(labelsize=6.5)
        if row == 0:
            ax.set_title("foreground intensities", fontsize=8)
            ax.legend(fontsize=6.5, frameon=False)
        if row == len(examples) - 1:
            ax.set_xlabel("model-input intensity", fontsize=7)
    fig.tight_layout(h_pad=0.6, w_pad=0.4)
    return save_figure(fig, png)
