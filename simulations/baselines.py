"""Non-federated pretraining baselines with the same code and compute as a federated run.

* ``centralized``: all training sites' studies pooled in one place (the upper bound that
  federation chases); AdaDN targets are the sites' exact statistics.
* ``local_only``: one site alone, with the compute it would spend in the federation;
  AdaDN targets are its own statistics (it never sees another site's).

Both call the site's own ``train_round`` (client/train.py), so model, pretext task,
optimizer, batches and crops are exactly those of a federated site.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch

from client.session import SiteSession, open_dataset
from client.stats import own_modality_stats, summarize_site
from client.train import train_round
from server.checkpoints import export_encoder
from shared.config import ModelConfig, RunConfig, SiteConfig, StrategyConfig
from shared.model import build_encoder, global_state, load_global_state, resolve_preset
from shared.pretext.shared_heads import initial_head_arrays, split_arrays
from shared.stats_schema import StatsPool


def pooled_site_folder(data_root: Path, sites: Sequence[str], dest: Path) -> Path:
    """A folder holding every study of ``sites`` (symbolic links, no copies)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for site in sites:
        for study in sorted((data_root / site).iterdir()):
            if study.is_dir() and not study.name.startswith("."):
                os.symlink(study.resolve(), dest / study.name)
    return dest


def exact_pool(cfg: RunConfig, site_dirs: Sequence[Path], *, state_root: Path) -> StatsPool:
    """Every site's exact (un-noised) per-modality statistics, as a pool."""
    per_modality: dict[str, list] = {}
    for k, site_dir in enumerate(site_dirs):
        ds = open_dataset(cfg, SiteConfig(data_dir=site_dir, state_dir=state_root / f"stats-{k}"))
        own = own_modality_stats(summarize_site(ds.study_stats("train"),
                                                modalities=cfg.data.modalities))
        for name, stats in own.items():
            per_modality.setdefault(name, []).append(stats)
    return StatsPool(modalities={k: tuple(v) for k, v in per_modality.items()},
                     contributors=len(site_dirs))


def pretrain_alone(
    cfg: RunConfig, *, data_dir: Path, rounds: int, steps_per_round: int, pool: StatsPool | None,
    out_dir: Path,
) -> Path:
    """Pretrain one encoder on one (possibly pooled) folder, round by round; export it.

    Runs ``rounds`` calls of the site's ``train_round`` with ``steps_per_round`` steps each,
    feeding each round's encoder into the next, so round-based schedules (a task's warm-up
    stages) advance exactly as in a federation. The strategy is plain FedAvg whatever the
    run's: with one data holder there is nothing to aggregate, and a FedProx or FedEMA
    client term would only pull the encoder back towards its own previous round.

    Returns:
        ``out_dir/encoder.safetensors``, loadable like a federated export. Its
        normalization parameters are the trained ones (nothing is site-local here).
    """
    preset = resolve_preset(cfg.model, cuda_available=torch.cuda.is_available())
    cfg = cfg.model_copy(update={
        "model": ModelConfig(**{**cfg.model.model_dump(), "preset": preset}),
        "train": cfg.train.model_copy(update={"local_steps": steps_per_round}),
        # One data holder has nothing to aggregate: no FedProx pull, no FedEMA blend.
        "federation": cfg.federation.model_copy(update={"strategy": StrategyConfig()}),
    })
    torch.manual_seed(cfg.seed)  # the same initial weights as the federated server
    encoder = build_encoder(preset)
    arrays = {**global_state(encoder, site_local_norm=cfg.model.site_local_norm),
              **initial_head_arrays(cfg, encoder)}
    site = SiteConfig(data_dir=data_dir, state_dir=out_dir / "site", share_templates=True)
    losses = []
    for server_round in range(1, rounds + 1):
        result = train_round(cfg=cfg, site=site, global_arrays=arrays, pool=pool,
                             server_round=server_round)
        arrays = result.arrays
        losses.append(result.metrics.get("train-loss"))
    session = SiteSession.open(cfg, site, pool=pool)  # restores the trained local parts
    load_global_state(session.encoder, split_arrays(arrays)[0],
                      site_local_norm=cfg.model.site_local_norm)
    state = {k: v.detach().cpu() for k, v in session.encoder.state_dict().items()}
    path, _ = export_encoder(out_dir, state, preset=preset,
                             card={"format": "fedmm-encoder/1", "preset": preset,
                                   "baseline": True, "rounds": rounds,
                                   "steps": rounds * steps_per_round, "train_loss": losses[-1],
                                   "train_loss_per_round": losses})
    return path
