"""The round protocol: statistics (round 0), pretraining rounds, checkpoints, export."""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import flwr
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from server.atomic_files import write_atomic
from server.checkpoints import CheckpointStore, export_encoder
from server.metrics_log import MetricsLog
from server.release_checks import ReleaseRejected, parse_release, round_trip_pool
from server.stats_pool import pool_site_stats
from server.strategy import Screening, build_strategy
from server.tracking import RunTracker
from server.update_privacy import PrivacyBudgetReached, RoundPrivacy, UpdatePrivacy
from shared.config import RunConfig
from shared.model import (
    MultiModalEncoder,
    build_encoder,
    global_parameter_names,
    global_state,
    load_global_state,
)
from shared.pretext.shared_heads import initial_head_arrays, split_arrays
from shared.site_errors import describe_site_error
from shared.stats_schema import SiteStats, StatsPool
from shared.wire import encode_round_config
from shared.wire_keys import Action, ConfigKey, MetricKey, RecordKey, task_metric_key

log = logging.getLogger("flwr.fedmm.server")

PROGRESS_FILE = "progress.json"


class FederationError(RuntimeError):
    """The run cannot go on (no sites, no usable round); the message says why."""


@dataclass
class RoundOutcome:
    """Per-node results of one message round."""

    sites: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)


def write_progress(out_dir: Path, **status: Any) -> None:
    """A tiny status file that `simulate` and `fedmm server run` follow."""
    write_atomic(out_dir / PROGRESS_FILE, json.dumps({**status, "time": time.time()}).encode())


def wait_for_sites(grid: Grid, *, count: int, timeout_s: float) -> list[int]:
    """Wait until ``count`` sites are connected, up to ``timeout_s``; return their ids."""
    deadline = time.monotonic() + timeout_s
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= count:
            return nodes
        if time.monotonic() > deadline:
            raise FederationError(
                f"Only {len(nodes)} of the {count} sites needed (federation.min_nodes) connected "
                f"within {timeout_s:.0f} s (federation.connect_timeout_s). Start more site "
                "daemons, or lower federation.min_nodes."
            )
        time.sleep(0.2)  # polls the SuperLink; round 0 should not wait a second for nothing


def _sender(msg: Message, dst_of: dict[str, int]) -> str:
    """The site a reply is about: an error the SuperLink injects for an unreachable site
    ("Node Unavailable") comes from the SuperLink itself, so map replies back through the
    message they answer."""
    return str(dst_of.get(msg.metadata.reply_to_message_id, msg.metadata.src_node_id))


def site_metric_names(cfg: RunConfig) -> frozenset[str]:
    """The metric names a fedmm site sends for this run (what metrics.json keeps of a reply)."""
    return frozenset({*(m.value for m in MetricKey),
                      *(task_metric_key(k, n) for k in (MetricKey.TRAIN_LOSS, MetricKey.EVAL_LOSS)
                        for n in cfg.pretext_names)})


def _outcome(replies: Iterable[Message], *, sent: list[Message], sent_bytes: int,
             names: frozenset[str]) -> RoundOutcome:
    """Per-site metrics (only ``names``, only numbers: a site can send anything) and the
    error replies of one message round."""
    out = RoundOutcome()
    dst_of = {m.metadata.message_id: m.metadata.dst_node_id for m in sent}
    for msg in replies:
        node = _sender(msg, dst_of)
        if msg.has_error():
            out.failures.append(_failure(node, msg))
            continue
        metrics = msg.content.metric_records.get(RecordKey.METRICS)
        arrays = msg.content.array_records.get(RecordKey.ARRAYS)
        entry: dict[str, Any] = {
            k: v for k, v in (metrics or {}).items()
            if k in names and isinstance(v, int | float) and not isinstance(v, bool)
        }
        entry["bytes-received-by-site"] = sent_bytes
        entry["bytes-sent-by-site"] = arrays.count_bytes() if arrays is not None else 0
        out.sites[node] = entry
    return out


def transfer_summary(sites: dict[str, dict[str, Any]], *, dtype: str,
                     float32_bytes: int) -> dict[str, Any]:
    """A round's upload against the encoder's float32 size: the transfer dtype, the bytes
    of the float32 encoder as broadcast, the mean bytes a site sent and their ratio."""
    sent = [s["bytes-sent-by-site"] for s in sites.values() if s.get("bytes-sent-by-site")]
    per_site = sum(sent) / len(sent) if sent else None
    return {"dtype": dtype, "encoder_float32_bytes": float32_bytes,
            "bytes_sent_per_site": per_site,
            "ratio_to_float32": per_site / float32_bytes if per_site and float32_bytes else None}


def _failure(node: str, msg: Message) -> dict[str, Any]:
    """A site's error reply as metrics.json lists it: the node, its code and what it means
    (a fedmm site sends a fixed code and an incident id, never exception text)."""
    return {"node": node, "code": int(msg.error.code),
            "reason": describe_site_error(msg.error.code, msg.error.reason)}


def _record_screening(train: RoundOutcome, screening: Screening) -> None:
    """Move rejected replies from the round's sites to its failures (with the check and the
    reason), and note each site's update norm and aggregation weight."""
    for verdict in screening.verdicts:
        site = train.sites.get(verdict.node)
        if site is not None and verdict.update_norm is not None:
            site["update-norm"] = verdict.update_norm
        if verdict.accepted:
            if site is not None:
                site["aggregation-weight"] = verdict.weight
            continue
        train.sites.pop(verdict.node, None)
        train.failures.append({"node": verdict.node, "rejected": str(verdict.rejected),
                               "reason": f"update rejected by the server: {verdict.reason}"})


def _missing(sent: list[Message], replies: list[Message]) -> list[dict[str, Any]]:
    dst_of = {m.metadata.message_id: m.metadata.dst_node_id for m in sent}
    answered = {_sender(m, dst_of) for m in replies}
    return [
        {"node": str(m.metadata.dst_node_id), "reason": "no reply before the round deadline"}
        for m in sent if str(m.metadata.dst_node_id) not in answered
    ]


def collect_pool(grid: Grid, cfg: RunConfig, nodes: list[int]) -> tuple[StatsPool, RoundOutcome]:
    """Round 0: ask every site for its anonymized SiteStats and pool them.

    Returns:
        The pool and the sites that failed or refused (with their reasons); no release is
        tied to a node id here.
    """
    config = ConfigRecord({**encode_round_config(cfg, None)})
    msgs = [
        Message(RecordDict({RecordKey.CONFIG: config}), dst_node_id=n,
                message_type=Action.STATS.value, group_id="round-0")
        for n in nodes
    ]
    replies = list(grid.send_and_receive(msgs, timeout=cfg.federation.round_timeout_s))
    dst_of = {m.metadata.message_id: m.metadata.dst_node_id for m in msgs}
    outcome = RoundOutcome()
    releases: list[SiteStats] = []
    for msg in replies:
        node = _sender(msg, dst_of)
        if msg.has_error():
            outcome.failures.append(_failure(node, msg))
            log.warning("Site %s did not release statistics: %s", node,
                        outcome.failures[-1]["reason"])
            continue
        record = msg.content.config_records.get(RecordKey.STATS)
        try:
            releases.append(parse_release(record.get(ConfigKey.STATS_JSON) if record else None, cfg))
        except ReleaseRejected as err:
            log.warning("Site %s: statistics release dropped from the pool: %s", node, err)
            outcome.failures.append({"node": node, "rejected": "statistics",
                                     "reason": f"statistics release dropped: {err}"})
    outcome.failures += _missing(msgs, replies)
    try:
        pool = round_trip_pool(pool_site_stats(releases, rng=random.Random(cfg.seed)))
    except ValueError as err:
        raise FederationError(str(err)) from err
    log.info("Statistics pool: %d sites contributed, %d withheld, modalities %s",
             pool.contributors, pool.withheld, sorted(pool.modalities))
    return pool, outcome


def _update_privacy(cfg: RunConfig, metrics: MetricsLog, grid: Grid) -> UpdatePrivacy | None:
    """The run's update-DP accounting (None when off), recomposing rounds already released."""
    if not cfg.privacy.updates.enabled:
        return None
    population = int(metrics.meta.get("update_privacy_population") or len(list(grid.get_node_ids())))
    metrics.set_meta(update_privacy_population=population)
    history = [RoundPrivacy(**r["train"]["update_privacy"]) for r in metrics.rounds
               if "update_privacy" in r.get("train", {})]
    return UpdatePrivacy(cfg.privacy.updates, population=population, history=history)


def statistics_privacy_summary(pool: StatsPool | None) -> dict[str, Any]:
    """The model card's account of round 0's releases: each site's epsilon, no ids.

    Sites hold different patients, so each patient's guarantee is their own site's
    epsilon; ``total_epsilon`` (the sum) bounds a patient whose studies are at every site.
    """
    epsilons = sorted(pool.release_epsilons) if pool else []
    return {"unit": "patient", "definition": "pure epsilon-DP, add/remove one patient",
            "release_epsilons": epsilons, "max_epsilon": max(epsilons, default=0.0),
            "total_epsilon": sum(epsilons), "details": "docs/privacy.md"}


def _initial_encoder(cfg: RunConfig, preset: str) -> MultiModalEncoder:
    torch.manual_seed(cfg.seed)  # every run with this seed starts from the same weights
    return build_encoder(preset)


def _lap(phases: dict[str, float], name: str, since: float) -> float:
    """Record the seconds since ``since`` as phase ``name``; return now."""
    now = time.time()
    phases[name] = now - since
    return now


def _mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None


def run_pretraining(grid: Grid, cfg: RunConfig, *, preset: str) -> Path:
    """Run round 0 and rounds 1..R (or resume), checkpointing every round; export at the end.

    Returns:
        The exported ``encoder.safetensors`` path.
    """
    if cfg.out_dir is None:
        raise FederationError("out_dir is not set; the ServerApp has nowhere to write results.")
    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    tracker = RunTracker(out, config=cfg.tracking)  # metrics.json's entries, to TensorBoard/MLflow
    try:
        return _run_rounds(grid, cfg, preset=preset, out=out, tracker=tracker)
    finally:
        tracker.close()


def _run_rounds(grid: Grid, cfg: RunConfig, *, preset: str, out: Path, tracker: RunTracker) -> Path:
    started = time.time()
    # Wall-clock marks (epoch seconds, so a harness on the same machine can line them up
    # with its own): metrics.json meta.timeline; benchmarks/overhead.py reads them.
    timeline: dict[str, float] = {"serverapp_started": started}
    store = CheckpointStore(out)
    encoder = _initial_encoder(cfg, preset)
    shared_head = initial_head_arrays(cfg, encoder)  # empty unless the run shares templates
    names = [*global_parameter_names(encoder, site_local_norm=cfg.model.site_local_norm),
             *shared_head]
    fed = cfg.federation

    if cfg.resume:
        state = store.load_latest()
        arrays, pool, first_round = state.arrays, state.pool, state.last_round + 1
        bad = [k for k, v in arrays.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:  # only a fedmm from before the update checks could have saved one
            raise FederationError(
                f"Cannot resume: the checkpoint of round {state.last_round} in {out} has NaN or "
                f"infinity in {len(bad)} entries (e.g. {bad[0]!r}); expected a finite encoder. "
                "Fix: start a new run in a new output folder.")
        metrics = MetricsLog(out, keep_until_round=state.last_round, tracker=tracker)
        log.info("Resuming from round %d in %s", state.last_round, out)
    else:
        metrics = MetricsLog(out, tracker=tracker)
        write_progress(out, phase="waiting for sites", round=0, rounds=fed.num_rounds)
        nodes = wait_for_sites(grid, count=fed.min_nodes, timeout_s=fed.connect_timeout_s)
        timeline["sites_connected"] = time.time()
        write_progress(out, phase="statistics", round=0, rounds=fed.num_rounds)
        pool, statistics = collect_pool(grid, cfg, nodes)
        timeline["statistics_done"] = time.time()
        arrays = {**global_state(encoder, site_local_norm=cfg.model.site_local_norm), **shared_head}
        first_round = 1
        store.save_round(0, arrays, pool, config_json=cfg.to_json())
        metrics.set_meta(config=json.loads(cfg.to_json()), preset=preset,
                         pool={"contributors": pool.contributors, "withheld": pool.withheld,
                               "modalities": {k: len(v) for k, v in pool.modalities.items()}},
                         statistics_failures=statistics.failures)

    strategy = build_strategy(cfg, pool=pool, global_names=names)
    update_dp = _update_privacy(cfg, metrics, grid)
    names_kept = site_metric_names(cfg)
    current = ArrayRecord(arrays)
    for rnd in range(first_round, fed.num_rounds + 1):
        t0 = time.time()
        write_progress(out, phase="training", round=rnd, rounds=fed.num_rounds)
        connected = wait_for_sites(grid, count=1, timeout_s=fed.connect_timeout_s)
        round_strategy: Any = strategy
        if update_dp is not None:
            try:
                update_dp.check_budget(len(connected))
            except PrivacyBudgetReached as stop:
                log.warning("%s", stop)
                metrics.set_meta(stopped=str(stop))
                break
            round_strategy = update_dp.wrap(strategy, sampled=len(connected))
        phases: dict[str, float] = {}
        mark = time.time()
        sent = list(round_strategy.configure_train(rnd, current, ConfigRecord(), grid))
        mark = _lap(phases, "configure", mark)
        replies = list(grid.send_and_receive(sent, timeout=fed.round_timeout_s))
        mark = _lap(phases, "send_and_wait", mark)
        broadcast_bytes = current.count_bytes()  # the global entries in float32, as sent
        train = _outcome(replies, sent=sent, sent_bytes=broadcast_bytes, names=names_kept)
        transfer = transfer_summary(train.sites, dtype=fed.transfer_dtype,
                                    float32_bytes=broadcast_bytes)
        train.failures += _missing(sent, replies)
        screening = strategy.screen_train_replies(rnd, replies)
        _record_screening(train, screening)
        needed = max(1, math.ceil(fed.quorum * len(sent)))
        accepted = len(screening.accepted)
        released = None
        if accepted >= needed:
            if update_dp is None:
                result = strategy.aggregate_screened(rnd, screening)
            else:
                result = update_dp.aggregate(round_strategy, rnd, screening.accepted, sampled=len(sent))
            reason = result.reason
            if result.arrays is not None:
                current = result.arrays
                if update_dp is not None:
                    released = update_dp.released(sites=accepted, sampled=len(sent))
        else:
            reason = (f"{accepted} of {len(sent)} sites sent an update that was accepted; the "
                      f"quorum is {needed} (federation.quorum)")
        mark = _lap(phases, "screen_and_aggregate", mark)
        aggregated = not reason
        if not aggregated:
            log.warning("Round %d: the global encoder is unchanged: %s.", rnd, reason)
        entry: dict[str, Any] = {
            "round": rnd,
            "seconds": time.time() - t0,
            "train": {
                "aggregated": aggregated,
                **({} if aggregated else {"reason": reason}),
                "loss": _mean(s.get(MetricKey.TRAIN_LOSS) for s in train.sites.values()),
                "sites": train.sites,
                "failures": train.failures,
                "transfer": transfer,
                **({"update_privacy": released.as_dict()} if released is not None else {}),
            },
            "evaluate": {"loss": None, "sites": {}, "failures": []},
        }
        # Metrics first, then the checkpoint: a server killed during evaluation resumes
        # after this round and still has its training metrics (resume keeps metrics up to
        # the checkpointed round, so a crash in between loses nothing either).
        metrics.record_round(entry)
        store.save_round(rnd, current.to_torch_state_dict(), pool, config_json=cfg.to_json())
        mark = _lap(phases, "metrics_and_checkpoint", mark)

        write_progress(out, phase="evaluating", round=rnd, rounds=fed.num_rounds)
        sent_eval = list(strategy.configure_evaluate(rnd, current, ConfigRecord(), grid))
        eval_replies = list(grid.send_and_receive(sent_eval, timeout=fed.round_timeout_s))
        evaluate = _outcome(eval_replies, sent=sent_eval, sent_bytes=current.count_bytes(),
                            names=names_kept)
        evaluate.failures += _missing(sent_eval, eval_replies)
        _lap(phases, "evaluate", mark)
        entry["seconds"] = time.time() - t0
        entry["phases"] = phases
        entry["evaluate"] = {
            "loss": _mean(s.get(MetricKey.EVAL_LOSS) for s in evaluate.sites.values()),
            "sites": evaluate.sites,
            "failures": evaluate.failures,
        }
        metrics.record_round(entry)
        log.info("Round %d/%d: train loss %s, held-out loss %s, %d sites, %.1f s", rnd,
                 fed.num_rounds, metrics.rounds[-1]["train"]["loss"],
                 metrics.rounds[-1]["evaluate"]["loss"], len(train.sites), time.time() - t0)

    timeline["rounds_done"] = time.time()
    if not any(r["train"]["aggregated"] for r in metrics.rounds):
        raise FederationError(
            "No round was aggregated, so the encoder was never trained: each round of "
            "metrics.json says why (train.reason) and lists the sites' errors and rejected "
            "updates (train.failures). Check those sites' logs under the incident ids."
        )
    encoder_arrays, _ = split_arrays(current.to_torch_state_dict())  # shared heads not exported
    load_global_state(encoder, encoder_arrays, site_local_norm=cfg.model.site_local_norm)
    card = {
        "format": "fedmm-encoder/1",
        "preset": preset,
        "parameters": sum(p.numel() for p in encoder.parameters()),
        "rounds": fed.num_rounds,
        "sites": max((len(r["train"]["sites"]) for r in metrics.rounds), default=0),
        "pretext": "+".join(cfg.pretext_names),
        "strategy": cfg.federation.strategy.name,
        "update_privacy": update_dp.summary() if update_dp is not None else {"enabled": False},
        "stopped_early": metrics.meta.get("stopped"),
        "pool": {"contributors": pool.contributors if pool else 0,
                 "withheld": pool.withheld if pool else 0,
                 "modalities": sorted(pool.modalities) if pool else []},
        "statistics_privacy": statistics_privacy_summary(pool),
        "final_metrics": {"train_loss": metrics.latest("train"),
                          "eval_loss": metrics.latest("evaluate")},
        "site_local": "normalization-layer parameters stayed on the sites; the exported "
                      "encoder has their initial values" if cfg.model.site_local_norm else "none",
        "config": json.loads(cfg.to_json()),
        "versions": {"flwr": flwr.__version__, "torch": torch.__version__},
        "seconds": time.time() - started,
        "usage": "from shared.model import load_pretrained_encoder; "
                 "encoder = load_pretrained_encoder('encoder.safetensors')",
    }
    enc_path, _ = export_encoder(out, encoder.state_dict(), preset=preset, card=card)
    timeline["export_done"] = time.time()
    metrics.set_meta(timeline=timeline)
    write_progress(out, phase="done", round=fed.num_rounds, rounds=fed.num_rounds)
    return enc_path
