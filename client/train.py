"""One local training round on a site (torch only; no Flower)."""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from client.device import autocast_for, prefetch_ahead
from client.fedema import FedEmaBlend, compatible, fedema_blend
from client.fedprox import ProximalTerm, global_parameters
from client.prefetch import prefetched
from client.session import SiteSession, site_seed
from shared.coarse_counts import coarse_count
from shared.config import FedEmaConfig, FedProxConfig, RunConfig, SiteConfig
from shared.model import global_state, load_global_state
from shared.pretext.mixture import StepViews
from shared.pretext.shared_heads import (
    head_arrays,
    load_head_arrays,
    require_consent,
    split_arrays,
)
from shared.stats_schema import StatsPool
from shared.wire_keys import MetricKey, task_metric_key

log = logging.getLogger(__name__)


def _per_task(base: MetricKey, values: Mapping[str, list[float]],
              names: tuple[str, ...]) -> dict[str, float]:
    """Each task's mean loss under its own metric name, when several tasks train together."""
    if len(names) < 2:
        return {}
    return {task_metric_key(base, n): float(sum(values[n]) / len(values[n]))
            for n in names if values.get(n)}


@dataclass(frozen=True)
class RoundResult:
    """What a site returns: the global encoder part and numbers (nothing else leaves)."""

    arrays: dict[str, torch.Tensor]
    metrics: dict[str, float | int]


def _optimizer(session: SiteSession) -> tuple[torch.optim.Optimizer, str]:
    params = [*session.encoder.parameters(), *session.heads.parameters()]
    signature = ("+".join(session.pretext.names) + ":"
                 + ",".join(str(tuple(p.shape)) for p in params))
    opt = torch.optim.AdamW(params, lr=session.cfg.train.lr,
                            weight_decay=session.cfg.train.weight_decay)
    if session.state.optimizer is not None:
        if session.state.optimizer_signature == signature:
            opt.load_state_dict(session.state.optimizer)
        else:
            log.warning("Site optimizer state belongs to another model/task; starting it afresh.")
    return opt, signature


def _fedema_start(session: SiteSession, global_arrays: Mapping[str, torch.Tensor],
                  server_round: int, *, tau: float) -> FedEmaBlend:
    """FedEMA: the encoder this site trains from, blended from its previous one.

    A previous encoder from a round that is not earlier than this one (another run using
    the same state folder, or a replayed round) or of another shape is not blended in:
    the site starts afresh from the global encoder and lambda is fixed again.
    """
    state = session.state
    previous: Mapping[str, torch.Tensor] | None = state.fedema_encoder or None
    lam = state.fedema_lambda
    if previous is not None and (state.fedema_round >= server_round
                                 or not compatible(previous, global_arrays)):
        log.warning("FedEMA: this site's previous encoder (round %d) does not belong to this "
                    "run's round %d or model; starting from the global encoder.",
                    state.fedema_round, server_round)
        previous, lam = None, None
    return fedema_blend(global_arrays, previous, lam=lam, tau=tau)


def train_round(
    *,
    cfg: RunConfig,
    site: SiteConfig,
    global_arrays: Mapping[str, torch.Tensor],
    pool: StatsPool | None,
    server_round: int,
) -> RoundResult:
    """Train the global encoder for ``cfg.train.local_steps`` steps on this site's data.

    Loads the global encoder into the site's model (site-local parts restored from disk),
    runs the pretext task, saves the site-local state, and returns only the encoder's
    global entries (plus the head entries the run shares, if this site consents) and
    metrics.

    ``cfg.federation.strategy`` adds the site's part of two strategies: ``fedema`` blends
    the site's previous encoder into the global one before training (client/fedema.py);
    ``fedprox`` adds ``mu/2 ||w - w_g||^2`` to every step's loss (client/fedprox.py). The
    reported ``train-loss`` is the pretext loss alone, comparable across strategies.
    """
    started = time.perf_counter()
    require_consent(cfg, site_allows=site.share_templates)
    strategy = cfg.federation.strategy
    session = SiteSession.open(cfg, site, pool=pool, server_round=server_round)
    fedema = (_fedema_start(session, global_arrays, server_round, tau=strategy.fedema_tau)
              if isinstance(strategy, FedEmaConfig) else None)
    encoder_arrays, shared_head = split_arrays(fedema.arrays if fedema is not None else global_arrays)
    load_global_state(session.encoder, encoder_arrays, site_local_norm=cfg.model.site_local_norm)
    load_head_arrays(cfg, session.heads, shared_head)
    prox = (ProximalTerm(global_parameters(session.encoder, site_local_norm=cfg.model.site_local_norm),
                         mu=strategy.proximal_mu)
            if isinstance(strategy, FedProxConfig) else None)
    opt, signature = _optimizer(session)
    seed = site_seed(cfg, site, server_round)
    generator = torch.Generator().manual_seed(seed)
    batches = session.dataset.train_batches(batch_size=cfg.data.batch_size, seed=seed)
    session.encoder.train()
    session.pretext.train()
    autocast = functools.partial(autocast_for, session.device, enabled=cfg.train.amp)
    losses: list[float] = []
    task_losses: dict[str, list[float]] = defaultdict(list)
    skipped: Counter[str] = Counter()
    examples = 0
    ahead = prefetch_ahead(cfg.train, session.device)
    pin = ahead > 0 and session.device.type == "cuda"

    def next_views() -> StepViews:
        views = session.pretext.views(next(batches), generator)
        return views.pinned() if pin else views

    for views in prefetched(next_views, cfg.train.local_steps, ahead=ahead):
        step = session.pretext.losses(views, encoder=session.encoder, device=session.device,
                                      autocast=autocast)
        skipped.update(step.skipped)
        if step.total is None:
            continue
        opt.zero_grad(set_to_none=True)
        loss = (step.total + prox()) if prox is not None else step.total
        loss.backward()
        opt.step()
        losses.append(float(step.total.detach()))
        for name, value in step.per_task.items():
            task_losses[name].append(value)
        examples += step.num_studies
    warning = session.pretext.skip_warning(skipped)
    if warning:
        log.warning("%s", warning)
    arrays = {**global_state(session.encoder, site_local_norm=cfg.model.site_local_norm),
              **head_arrays(cfg, session.heads)}
    if fedema is not None:
        # W_k for the next round: the encoder exactly as this site sends it.
        session.state.fedema_encoder = {k: v.clone() for k, v in arrays.items()}
        session.state.fedema_lambda = fedema.lam
        session.state.fedema_round = server_round
    session.save_state(server_round=server_round, optimizer=opt, optimizer_signature=signature)
    return RoundResult(
        arrays=arrays,
        metrics={
            MetricKey.NUM_EXAMPLES: coarse_count(examples),
            MetricKey.TRAIN_LOSS: float(sum(losses) / len(losses)) if losses else float("nan"),
            MetricKey.STEPS: len(losses),
            MetricKey.SKIPPED: coarse_count(max(skipped.values(), default=0)),
            MetricKey.SECONDS: time.perf_counter() - started,
            **_per_task(MetricKey.TRAIN_LOSS, task_losses, session.pretext.names),
            **({MetricKey.FEDEMA_MU: fedema.mu} if fedema is not None else {}),
        },
    )
