"""Held-out pretext loss of the global encoder on a site's evaluation studies."""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from collections.abc import Mapping

import torch

from client.device import autocast_for
from client.session import SiteSession, site_seed
from client.train import RoundResult
from shared.coarse_counts import coarse_count
from shared.config import RunConfig, SiteConfig
from shared.model import load_global_state
from shared.pretext.shared_heads import load_head_arrays, split_arrays
from shared.stats_schema import StatsPool
from shared.wire_keys import MetricKey, task_metric_key

_EVAL_ROUND = -1  # fixed seed across rounds, so successive evaluations see the same crops


@torch.no_grad()
def evaluate_round(
    *,
    cfg: RunConfig,
    site: SiteConfig,
    global_arrays: Mapping[str, torch.Tensor],
    pool: StatsPool | None,
    server_round: int = 0,
) -> RoundResult:
    """Mean pretext loss over fixed held-out crops; changes nothing on the site."""
    started = time.perf_counter()
    session = SiteSession.open(cfg, site, pool=pool, server_round=server_round)
    encoder_arrays, shared_head = split_arrays(global_arrays)
    load_global_state(session.encoder, encoder_arrays, site_local_norm=cfg.model.site_local_norm)
    load_head_arrays(cfg, session.heads, shared_head)
    session.encoder.eval()
    session.pretext.train(False)
    seed = site_seed(cfg, site, _EVAL_ROUND)
    generator = torch.Generator().manual_seed(seed)
    batches = session.dataset.eval_batches(
        batch_size=cfg.data.batch_size, num_batches=cfg.train.eval_batches, seed=seed
    )
    autocast = functools.partial(autocast_for, session.device, enabled=cfg.train.amp)
    total = 0.0
    examples = 0
    task_totals: dict[str, float] = defaultdict(float)
    task_examples: dict[str, int] = defaultdict(int)
    for batch in batches:
        step = session.pretext.step(batch, generator, encoder=session.encoder,
                                    device=session.device, autocast=autocast)
        if step.total is None:
            continue
        total += float(step.total) * step.num_studies
        examples += step.num_studies
        for name, value in step.per_task.items():
            task_totals[name] += value * step.num_studies
            task_examples[name] += step.num_studies
    per_task = ({task_metric_key(MetricKey.EVAL_LOSS, n): task_totals[n] / task_examples[n]
                 for n in task_examples} if len(session.pretext.names) > 1 else {})
    return RoundResult(
        arrays={},
        metrics={
            MetricKey.NUM_EXAMPLES: coarse_count(examples),
            MetricKey.EVAL_LOSS: total / examples if examples else float("nan"),
            MetricKey.SECONDS: time.perf_counter() - started,
            **per_task,
        },
    )
