"""Non-federated pretraining baselines with the same code and compute as a federated run.

* ``centralized``: all training sites' studies pooled in one place (the upper bound that
  federation chases); AdaDN targets are the sites' exact statistics.
* ``local_only``: one site alone, with the compute it would spend in the federation;
  AdaDN targets are its own statistics (it never sees another site's).
* ``cyclic``: cyclic weight transfer (Chang et al., JAMIA 2018): one model visits the sites
  in turn each round, training on each for the federation's local steps; nothing is averaged.
* ``iid_site_folders``: the training sites' studies dealt at random into equal virtual sites,
  for a federation whose sites no longer differ by scanner (``federated_iid``).

All call the site's own ``train_round`` (client/train.py), so model, pretext task,
optimizer, batches and crops are exactly those of a federated site.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from client.session import SiteSession, open_dataset
from client.stats import own_modality_stats, summarize_site
from client.train import train_round
from server.checkpoints import export_encoder
from shared.config import FedAvgConfig, ModelConfig, RunConfig, SiteConfig
from shared.model import build_encoder, global_state, load_global_state, resolve_preset
from shared.pretext.shared_heads import initial_head_arrays, split_arrays
from shared.stats_schema import StatsPool
from simulations.simulate import preprocessed_dir


def pooled_site_folder(data_root: Path, sites: Sequence[str], dest: Path) -> Path:
    """A folder holding every study of ``sites`` (symbolic links, no copies)."""
    return linked_folder([s for site in sites for s in site_studies(data_root / site)], dest)


def linked_folder(studies: Sequence[Path], dest: Path) -> Path:
    """``dest`` made anew, holding a symbolic link to each study folder given."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for study in studies:
        _link(study, dest)
    return dest


def site_studies(site_dir: Path) -> list[Path]:
    """A site folder's study folders (non-hidden sub-folders), sorted by name."""
    return sorted(p for p in site_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def _link(study: Path, folder: Path) -> None:
    link = folder / study.name
    if link.exists() or link.is_symlink():
        raise ValueError(f"two sites hold a study folder named {study.name!r} ({study} and "
                         f"{link.resolve()}); pooling them in {folder} needs unique study folder "
                         "names: rename one of them.")
    os.symlink(study.resolve(), link)


def iid_site_folders(data_root: Path, sites: Sequence[str], dest: Path, *, seed: int) -> Path:
    """``dest/site-<k>`` for k < len(sites): every study of ``sites`` dealt at random (seeded)
    into as many virtual sites of near-equal size (symbolic links, no copies), so that each
    virtual site mixes all scanners. Returns ``dest``."""
    if dest.exists():
        shutil.rmtree(dest)
    studies = [s for site in sites for s in site_studies(data_root / site)]
    order = np.random.default_rng([seed, 0x11D]).permutation(len(studies))
    for k in range(len(sites)):
        folder = dest / f"site-{k}"
        folder.mkdir(parents=True)
        for i in order[k::len(sites)]:
            _link(studies[i], folder)
    return dest


def exact_pool(cfg: RunConfig, site_dirs: Sequence[Path], *, state_root: Path) -> StatsPool:
    """Every site's exact (un-noised) per-modality statistics, as a pool."""
    per_modality: dict[str, list] = {}
    for k, site_dir in enumerate(site_dirs):
        ds = open_dataset(cfg, SiteConfig(data_dir=site_dir, state_dir=state_root / f"stats-{k}",
                                          samples_dir=preprocessed_dir()))
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
    return _pretrain_visiting(cfg, site_dirs=[data_dir], rounds=rounds,
                              steps_per_round=steps_per_round, pool=pool, out_dir=out_dir)


def pretrain_cyclic(
    cfg: RunConfig, *, site_dirs: Sequence[Path], rounds: int, steps_per_round: int,
    pool: StatsPool | None, out_dir: Path,
) -> Path:
    """Cyclic weight transfer: each round the one model trains ``steps_per_round`` steps on
    each site in turn (in ``site_dirs`` order), so it takes as many steps per round as the
    federation's sites together, on single-site batches, without averaging.

    Returns:
        ``out_dir/encoder.safetensors``. With ``site_local_norm`` the normalization
        parameters stay at the sites, so the export has their initial values, as a
        federated export does.
    """
    return _pretrain_visiting(cfg, site_dirs=site_dirs, rounds=rounds,
                              steps_per_round=steps_per_round, pool=pool, out_dir=out_dir)


def _pretrain_visiting(
    cfg: RunConfig, *, site_dirs: Sequence[Path], rounds: int, steps_per_round: int,
    pool: StatsPool | None, out_dir: Path,
) -> Path:
    """``rounds`` rounds, each a ``train_round`` on every folder of ``site_dirs`` in turn."""
    preset = resolve_preset(cfg.model, cuda_available=torch.cuda.is_available())
    cfg = cfg.model_copy(update={
        "model": ModelConfig(**{**cfg.model.model_dump(), "preset": preset}),
        "train": cfg.train.model_copy(update={"local_steps": steps_per_round}),
        # One data holder has nothing to aggregate: no FedProx pull, no FedEMA blend.
        "federation": cfg.federation.model_copy(update={"strategy": FedAvgConfig()}),
    })
    torch.manual_seed(cfg.seed)  # the same initial weights as the federated server
    encoder = build_encoder(preset)
    arrays = {**global_state(encoder, site_local_norm=cfg.model.site_local_norm),
              **initial_head_arrays(cfg, encoder)}
    sites = [SiteConfig(data_dir=d, state_dir=out_dir / ("site" if len(site_dirs) == 1 else f"site-{k}"),
                        samples_dir=preprocessed_dir(),
                        share_templates=True) for k, d in enumerate(site_dirs)]
    losses = []
    for server_round in range(1, rounds + 1):
        for site in sites:
            result = train_round(cfg=cfg, site=site, global_arrays=arrays, pool=pool,
                                 server_round=server_round)
            arrays = result.arrays
        losses.append(result.metrics.get("train-loss"))
    if len(sites) == 1:
        encoder = SiteSession.open(cfg, sites[0], pool=pool).encoder  # its trained local parts
    load_global_state(encoder, split_arrays(arrays)[0], site_local_norm=cfg.model.site_local_norm)
    state = {k: v.detach().cpu() for k, v in encoder.state_dict().items()}
    path, _ = export_encoder(out_dir, state, preset=preset,
                             card={"format": "fedmm-encoder/1", "preset": preset,
                                   "baseline": True, "rounds": rounds, "sites_visited": len(sites),
                                   "steps": rounds * steps_per_round * len(sites),
                                   "train_loss": losses[-1], "train_loss_per_round": losses})
    return path
