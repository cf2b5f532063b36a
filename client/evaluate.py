"""Held-out pretext loss of the global encoder on a site's evaluation studies."""

from __future__ import annotations

import time
from collections.abc import Mapping

import torch

from client.device import autocast_for
from client.session import SiteSession, site_seed
from client.train import RoundResult
from shared.config import RunConfig, SiteConfig
from shared.keys import MetricKey
from shared.model import load_global_state
from shared.stats_schema import StatsPool

_EVAL_ROUND = -1  # fixed seed across rounds, so successive evaluations see the same crops


@torch.no_grad()
def evaluate_round(
    *,
    cfg: RunConfig,
    site: SiteConfig,
    global_arrays: Mapping[str, torch.Tensor],
    pool: StatsPool | None,
) -> RoundResult:
    """Mean pretext loss over fixed held-out crops; changes nothing on the site."""
    started = time.perf_counter()
    session = SiteSession.open(cfg, site, pool=pool)
    load_global_state(session.encoder, global_arrays, site_local_norm=cfg.model.site_local_norm)
    session.encoder.eval()
    session.head.eval()
    seed = site_seed(cfg, site, _EVAL_ROUND)
    generator = torch.Generator().manual_seed(seed)
    batches = session.dataset.eval_batches(
        batch_size=cfg.data.batch_size, num_batches=cfg.train.eval_batches, seed=seed
    )
    total = 0.0
    examples = 0
    for batch in batches:
        views = session.task.make_views(batch, generator)
        if views.empty:
            continue
        views = views.to(session.device)
        with autocast_for(session.device, enabled=cfg.train.amp):
            loss = session.task.loss(views, encoder=session.encoder, head=session.head)
        total += float(loss) * views.num_studies
        examples += views.num_studies
    return RoundResult(
        arrays={},
        metrics={
            MetricKey.NUM_EXAMPLES: examples,
            MetricKey.EVAL_LOSS: total / examples if examples else float("nan"),
            MetricKey.SECONDS: time.perf_counter() - started,
        },
    )
