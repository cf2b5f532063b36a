"""The outgoing-message guard: a Flower mod that lets only declared content leave a site.

Every reply passes through ``outgoing_guard`` after the handler ran. It enforces, in code,
what PRODUCT.md promises: a reply holds the global encoder entries (exact names,
shapes and the run's transfer dtype), whitelisted scalar metrics (counts only as coarse
buckets), or one schema-valid SiteStats, and nothing else; an error reply holds only a
fedmm site error code and its fixed reason. A violation raises, and the error mod around the guard
(``client/error_mod.py``) sends the server a code instead of the content.
"""

from __future__ import annotations

import json

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp.typing import ClientAppCallable
from pydantic import ValidationError

from shared.coarse_counts import COARSE_COUNTS
from shared.config import RunConfig
from shared.model import build_encoder, global_state, resolve_preset
from shared.pretext.shared_heads import initial_head_arrays
from shared.site_errors import SiteErrorCode, SiteRefusal, is_site_error
from shared.stats_schema import SiteStats
from shared.transfer import wire_dtype
from shared.wire import decode_round_config
from shared.wire_keys import Action, ConfigKey, MetricKey, RecordKey, task_metric_key

_ALLOWED_RECORDS: dict[str, dict[str, type]] = {
    Action.STATS: {RecordKey.STATS: ConfigRecord},
    Action.TRAIN: {RecordKey.ARRAYS: ArrayRecord, RecordKey.METRICS: MetricRecord},
    Action.EVALUATE: {RecordKey.METRICS: MetricRecord},
}
_METRIC_NAMES = frozenset(m.value for m in MetricKey)
#: Metrics that are counts of the site's data: they leave only as coarse bucket bounds.
_COUNT_METRICS = frozenset({MetricKey.NUM_EXAMPLES.value, MetricKey.SKIPPED.value})


class OutgoingMessageError(SiteRefusal, RuntimeError):
    """A reply tried to carry something that may not leave the site."""

    code = SiteErrorCode.OUTGOING_BLOCKED


def _expected_state(cfg: RunConfig) -> dict[str, torch.Tensor]:
    encoder = build_encoder(resolve_preset(cfg.model, cuda_available=torch.cuda.is_available()))
    return {**global_state(encoder, site_local_norm=cfg.model.site_local_norm),
            **initial_head_arrays(cfg, encoder)}


def expected_arrays(cfg: RunConfig) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the only arrays a site may send for this run config.

    The global encoder entries, plus the head entries the run shares (none by default;
    train_round refuses to produce them unless the site consents).
    """
    return {k: tuple(v.shape) for k, v in _expected_state(cfg).items()}


def check_reply(content: RecordDict, *, action: str, cfg: RunConfig) -> None:
    """Raise OutgoingMessageError unless ``content`` is exactly what ``action`` may send."""
    allowed = _ALLOWED_RECORDS.get(action)
    if allowed is None:
        raise OutgoingMessageError(f"no reply is allowed for message type {action!r}")
    if set(content) != set(allowed):
        raise OutgoingMessageError(
            f"a {action!r} reply must hold exactly {sorted(allowed)}, got {sorted(content)}"
        )
    for key, record in content.items():
        if not isinstance(record, allowed[key]):
            raise OutgoingMessageError(
                f"record {key!r} must be a {allowed[key].__name__}, got {type(record).__name__}"
            )
        if isinstance(record, ArrayRecord):
            _check_arrays(record, cfg)
        elif isinstance(record, MetricRecord):
            _check_metrics(record, cfg)
        else:
            _check_stats(record)


def _check_arrays(record: ArrayRecord, cfg: RunConfig) -> None:
    state = _expected_state(cfg)
    expected = {k: tuple(v.shape) for k, v in state.items()}
    if set(record) != set(expected):
        extra = sorted(set(record) - set(expected))
        raise OutgoingMessageError(
            f"arrays must be exactly the global encoder entries; unexpected {extra[:5]}, "
            f"missing {sorted(set(expected) - set(record))[:5]}"
        )
    for name, array in record.items():
        if tuple(array.shape) != expected[name]:
            raise OutgoingMessageError(
                f"array {name!r} has shape {tuple(array.shape)}, expected {expected[name]}"
            )
        reference = torch.empty((), dtype=state[name].dtype).numpy().dtype
        wire = wire_dtype(reference, cfg.federation.transfer_dtype)
        if array.dtype != wire.name:
            raise OutgoingMessageError(
                f"array {name!r} has dtype {array.dtype}, expected {wire.name} "
                f"(federation.transfer_dtype = {cfg.federation.transfer_dtype!r})"
            )


def allowed_metric_names(cfg: RunConfig) -> frozenset[str]:
    """The fixed metric names plus each of the run's pretext tasks' loss shares."""
    per_task = {task_metric_key(k, n) for k in (MetricKey.TRAIN_LOSS, MetricKey.EVAL_LOSS)
                for n in cfg.pretext_names}
    return _METRIC_NAMES | per_task


def _check_metrics(record: MetricRecord, cfg: RunConfig) -> None:
    allowed = allowed_metric_names(cfg)
    unknown = sorted(set(record) - allowed)
    if unknown:
        raise OutgoingMessageError(f"metrics {unknown} are not in the allowed set {sorted(allowed)}")
    for name, value in record.items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise OutgoingMessageError(f"metric {name!r} must be one number, got {type(value).__name__}")
        if name in _COUNT_METRICS and value not in COARSE_COUNTS:
            raise OutgoingMessageError(f"metric {name!r} is a count and may only be one of "
                                       f"{COARSE_COUNTS} (shared/coarse_counts.py), got {value!r}")


def _check_stats(record: ConfigRecord) -> None:
    if set(record) != {ConfigKey.STATS_JSON}:
        raise OutgoingMessageError(
            f"site-stats must hold only {ConfigKey.STATS_JSON.value!r}, got {sorted(record)}"
        )
    try:
        SiteStats.model_validate(json.loads(str(record[ConfigKey.STATS_JSON])))
    except (ValidationError, json.JSONDecodeError) as err:
        raise OutgoingMessageError(f"site-stats is not a valid SiteStats: {err}") from err


def outgoing_guard(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Flower mod: run the handler, then check its reply before it leaves the site."""
    reply = call_next(msg, context)
    if reply.has_error():
        if not is_site_error(reply.error.code, reply.error.reason):
            raise OutgoingMessageError(
                f"an error reply may only carry a fedmm site error code and its fixed reason "
                f"(shared/site_errors.py), got code {reply.error.code} with another reason")
        return reply
    cfg, _, _ = decode_round_config(msg.content[RecordKey.CONFIG])
    check_reply(reply.content, action=msg.metadata.message_type, cfg=cfg)
    return reply
