"""Encoder embeddings of held-out crops, before and after pretraining, projected and coloured by site."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from safetensors.torch import load_file

from client.data.batches import eval_batch_list
from shared.model import MultiModalEncoder, build_encoder, load_global_state, load_pretrained_encoder
from simulations.report.png_output import save_figure
from simulations.report.projection import (
    effective_dimensions,
    pca_2d,
    silhouette_by_group,
    site_variance_fraction,
)
from simulations.report.run_folder import RunFolder
from simulations.report.site_data import ReportSite

#: Few crops keep the report cheap on a CPU (2 encoders x sites x crops x modalities passes).
CROPS_PER_SITE = 16


def report_device() -> torch.device:
    """CUDA when this machine has it (a GPU run's gpu-base encoder is slow on a CPU), else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def initial_encoder(run: RunFolder) -> MultiModalEncoder:
    """The global encoder as it was before round 1 (round 0's checkpoint).

    Site-local parameters (normalization, with ``model.site_local_norm``) are not in a
    checkpoint; they keep their initial values, as in the exported encoder.

    Raises:
        ValueError: the run recorded no preset, or the checkpoint is missing or does not fit.
    """
    preset = run.preset
    if preset is None:
        raise ValueError("expected the encoder preset in model_card.json or metrics.json, got none")
    if not run.initial_checkpoint.is_file():
        raise ValueError(f"expected the initial checkpoint {run.initial_checkpoint}, got no file")
    local_norm = bool(((run.config or {}).get("model") or {}).get("site_local_norm", True))
    encoder = build_encoder(preset)
    load_global_state(encoder, load_file(str(run.initial_checkpoint)), site_local_norm=local_norm)
    return encoder.to(report_device()).eval()


def final_encoder(run: RunFolder) -> MultiModalEncoder:
    """The exported encoder (``encoder.safetensors``), as a downstream user loads it."""
    return load_pretrained_encoder(run.encoder_file).to(report_device()).eval()


def held_out_crops(site: ReportSite, *, crops: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``crops`` seeded crops cycling over the site's held-out studies.

    Returns:
        ``image`` (K, M, c, c, c) and ``present`` (K, M).

    Raises:
        ValueError: the site has no held-out study.
    """
    dataset = site.dataset
    # Read each held-out study from the disk cache once (the dataset's own eval_batches
    # re-reads a whole study for every crop); eval_batch_list draws the same crops.
    studies = list(dataset.preprocessed("eval"))
    if not studies:
        raise ValueError(f"expected held-out studies at {site.name}, got none (eval split is empty)")
    batches = eval_batch_list(studies, data=dataset.data, batch_size=1, num_batches=crops, seed=seed)
    return torch.cat([b["image"] for b in batches]), torch.cat([b["present"] for b in batches])


@torch.inference_mode()
def embed_crops(encoder: MultiModalEncoder, image: torch.Tensor, *, present: torch.Tensor,
                chunk: int = 64) -> np.ndarray:
    """One embedding per crop: the mean of the encoder's embeddings of its present modalities.

    Args:
        encoder: maps ``(N, 1, c, c, c)`` to ``(N, C)``.
        image: ``(K, M, c, c, c)`` crops.
        present: ``(K, M)`` 0/1 modality presence.
        chunk: volumes per forward pass.

    Returns:
        ``(K, C)`` float64 embeddings.
    """
    k, m = image.shape[:2]
    keep = present.reshape(-1) > 0
    volumes = image.reshape(k * m, 1, *image.shape[2:])[keep]
    device = next(encoder.parameters()).device
    out = torch.cat([encoder(volumes[i : i + chunk].to(device, torch.float32)).float().cpu()
                     for i in range(0, len(volumes), chunk)])
    full = torch.zeros(k * m, out.shape[1], dtype=out.dtype)
    full[keep] = out
    weights = present.reshape(k, m, 1).to(out.dtype)
    mean = (full.reshape(k, m, -1) * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
    return mean.double().numpy()


@dataclass(frozen=True)
class SiteEmbeddings:
    """Embeddings of the same crops under two encoders; ``sites[i]`` names crop i's site."""

    sites: tuple[str, ...]
    before: np.ndarray
    after: np.ndarray


def embed_sites(sites: Sequence[ReportSite], *, before: MultiModalEncoder, after: MultiModalEncoder,
                crops: int = CROPS_PER_SITE, seed: int = 0) -> tuple[SiteEmbeddings, list[str]]:
    """Embed ``crops`` held-out crops of every site with both encoders.

    Returns:
        The embeddings, and one note per site left out (no held-out study).

    Raises:
        ValueError: fewer than two sites have held-out crops (nothing to compare).
    """
    names: list[str] = []
    emb_before: list[np.ndarray] = []
    emb_after: list[np.ndarray] = []
    notes: list[str] = []
    for site in sites:
        try:
            image, present = held_out_crops(site, crops=crops, seed=seed)
        except ValueError as err:
            notes.append(str(err))
            continue
        names += [site.name] * len(image)
        emb_before.append(embed_crops(before, image, present=present))
        emb_after.append(embed_crops(after, image, present=present))
    if len({*names}) < 2:
        raise ValueError(f"expected held-out crops from at least two sites, got {sorted({*names})}")
    return SiteEmbeddings(sites=tuple(names), before=np.concatenate(emb_before),
                          after=np.concatenate(emb_after)), notes


@dataclass(frozen=True)
class EmbeddingScores:
    """How strongly site identity organizes an embedding, and how many dimensions it uses
    (see ``projection.py``)."""

    silhouette: float
    variance_fraction: float
    effective_dimensions: float


def embedding_scores(x: np.ndarray, sites: Sequence[str]) -> EmbeddingScores:
    """Silhouette by site, the share of variance explained by site and the embeddings'
    effective dimensions, for ``(N, C)`` embeddings."""
    return EmbeddingScores(silhouette=silhouette_by_group(x, sites),
                           variance_fraction=site_variance_fraction(x, sites),
                           effective_dimensions=effective_dimensions(x))


def plot_embeddings(emb: SiteEmbeddings, png: Path, *, site_order: Sequence[str]) -> tuple[
        EmbeddingScores, EmbeddingScores]:
    """Side-by-side PCA of the crops' embeddings before and after pretraining, by site.

    Returns:
        The site dominance of the embeddings before and after (computed in the full
        embedding space, not in the 2D projection).
    """
    cmap = colormaps["tab10"]
    colour = {name: cmap(i % cmap.N) for i, name in enumerate(site_order)}
    fig = Figure(figsize=(8.4, 3.9))
    axes = fig.subplots(1, 2)
    labels = np.asarray(emb.sites)
    scores = []
    for ax, x, title in ((axes[0], emb.before, "before pretraining (round-0 weights)"),
                         (axes[1], emb.after, "after pretraining (encoder.safetensors)")):
        proj = pca_2d(x)
        score = embedding_scores(x, emb.sites)
        scores.append(score)
        for name in site_order:
            sel = labels == name
            if sel.any():
                ax.scatter(proj.points[sel, 0], proj.points[sel, 1], s=16, color=colour[name],
                           alpha=0.8, edgecolors="none", label=name)
        ax.set_title(f"{title}\nsilhouette by site {score.silhouette:+.2f}, "
                     f"site explains {100 * score.variance_fraction:.0f} % of variance", fontsize=8)
        ax.set_xlabel(f"PC1 ({100 * proj.explained[0]:.0f} % of variance)", fontsize=7)
        ax.set_ylabel(f"PC2 ({100 * proj.explained[1]:.0f} %)", fontsize=7)
        ax.tick_params(labelsize=6.5)
        ax.grid(alpha=0.25)
    axes[1].legend(fontsize=7, frameon=False, loc="best", markerscale=1.3)
    fig.tight_layout()
    save_figure(fig, png)
    return scores[0], scores[1]
