"""Opens everything one site needs for a round: data, device, encoder, task head, state."""

from __future__ import annotations

import functools
import logging
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from client.data import SiteDataset, load_site_dataset
from client.device import place_model, select_device
from client.site_state import SiteState
from client.stats import own_modality_stats, summarize_site
from shared.config import DataConfig, RunConfig, SiteConfig
from shared.model import MultiModalEncoder, build_encoder, global_parameter_names, resolve_preset
from shared.model.site_local import ENCODER_PREFIX
from shared.pretext import PretextMixture, TaskContext
from shared.site_errors import SiteErrorCode, SiteRefusal
from shared.stats_schema import StatsPool

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4)
def _cached_dataset(data_dir: Path, cache_dir: Path, data_json: str, seed: int,
                    samples_dir: Path | None) -> SiteDataset:
    # Simulation reuses one process per site across rounds; deployment starts a fresh
    # process per message and relies on the on-disk cache inside load_site_dataset.
    return load_site_dataset(
        data_dir, data=DataConfig.model_validate_json(data_json), cache_dir=cache_dir, seed=seed,
        samples_dir=samples_dir,
    )


class NoUsableDataRefusal(SiteRefusal, ValueError):
    """The site has no study training can use (the message, with paths, stays at the site)."""

    code = SiteErrorCode.NO_USABLE_DATA


def open_dataset(cfg: RunConfig, site: SiteConfig) -> SiteDataset:
    """The site's preprocessed, cached dataset (problems are logged, never fatal).

    Raises:
        NoUsableDataRefusal: no study of the site can be used (the message lists why).
    """
    try:
        return _cached_dataset(site.data_dir, site.state_dir / "cache", cfg.data.model_dump_json(),
                               cfg.seed, site.samples_dir)
    except ValueError as err:
        raise NoUsableDataRefusal(str(err)) from err


def site_seed(cfg: RunConfig, site: SiteConfig, server_round: int) -> int:
    """A per-site, per-round seed: sites differ, a rerun of the same round replays."""
    return (cfg.seed * 1_000_003 + server_round * 7919 + zlib.crc32(str(site.state_dir).encode())) % (
        2**31
    )


@dataclass
class SiteSession:
    """A site's model parts for one round, restored from its local state."""

    cfg: RunConfig
    site: SiteConfig
    dataset: SiteDataset
    device: torch.device
    encoder: MultiModalEncoder
    pretext: PretextMixture
    state: SiteState

    @classmethod
    def open(cls, cfg: RunConfig, site: SiteConfig, *, pool: StatsPool | None,
             server_round: int = 0) -> SiteSession:
        dataset = open_dataset(cfg, site)
        device = select_device(cfg.train)
        encoder = build_encoder(resolve_preset(cfg.model, cuda_available=device.type == "cuda"))
        own = own_modality_stats(
            summarize_site(dataset.study_stats("train"), modalities=cfg.data.modalities)
        )
        context = TaskContext(modalities=cfg.data.modalities, pool=pool, own_stats=own,
                              server_round=server_round, crop_size=cfg.data.crop_size)
        # A new site's heads start the same way every time (seeded by the run's seed).
        pretext = PretextMixture.build(cfg.pretext, context=context, encoder=encoder, seed=cfg.seed)
        state = SiteState.load(site.state_dir)
        for name, head in pretext.heads.items():
            if name in state.heads:
                head.load_state_dict(state.heads[name])
        if state.encoder_local:
            encoder.load_state_dict(state.encoder_local, strict=False)
        place_model(pretext.heads, device, cfg.train.model_copy(update={"compile": False}))
        place_model(encoder, device, cfg.train)
        return cls(cfg, site, dataset, device, encoder, pretext, state)

    @property
    def heads(self) -> nn.ModuleDict:
        """The pretext tasks' site-local heads, by task name."""
        return self.pretext.heads

    def local_encoder_state(self) -> dict[str, torch.Tensor]:
        """The encoder entries that never leave the site."""
        glob = set(global_parameter_names(self.encoder, site_local_norm=self.cfg.model.site_local_norm))
        return {
            k: v.detach().cpu().contiguous()
            for k, v in self.encoder.state_dict().items()
            if f"{ENCODER_PREFIX}{k}" not in glob
        }

    def save_state(self, *, server_round: int | None = None, optimizer: torch.optim.Optimizer | None = None,
                   optimizer_signature: str = "") -> None:
        """Persist head, site-local encoder parts and optimizer to the site's disk."""
        for name, head in self.heads.items():
            self.state.heads[name] = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
        self.state.encoder_local = self.local_encoder_state()
        if optimizer is not None:
            self.state.optimizer = optimizer.state_dict()
            self.state.optimizer_signature = optimizer_signature
        if server_round is not None and server_round not in self.state.rounds:
            self.state.rounds.append(server_round)
        self.state.save(self.site.state_dir)
