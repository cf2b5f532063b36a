"""The fedmm ClientApp: decode, check the site's limits, call the site's typed round functions, encode.

Three mods wrap every handler: innermost, update clipping when a run uses update DP
(Flower's ``fixedclipping_mod``); the outgoing guard (only declared content leaves); and,
outermost, the error mod (a failure leaves as a code and an incident id, never as text).
"""

from __future__ import annotations

from typing import Any

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from client.error_mod import contain_errors
from client.evaluate import evaluate_round
from client.guard import expected_arrays, outgoing_guard
from client.incoming_checks import IncomingRefusal, check_global_arrays, check_pool
from client.release import release_site_stats
from client.site_config import resolve_site
from client.site_limits import check_site_limits
from client.train import train_round
from client.update_clipping import clip_updates
from shared.config import RunConfig, SiteConfig
from shared.stats_schema import StatsPool
from shared.transfer import to_wire
from shared.wire import InvalidPoolError, decode_round_config
from shared.wire_keys import ConfigKey, RecordKey

app = ClientApp(mods=[contain_errors, outgoing_guard, clip_updates])


def _decode(msg: Message, context: Context) -> tuple[RunConfig, SiteConfig, StatsPool | None, int]:
    """The run config, this site's own settings, the pool and the round; refuses a run
    that asks for more than the site's limits allow, and a pool that does not validate."""
    try:
        cfg, pool, server_round = decode_round_config(msg.content[RecordKey.CONFIG])
    except InvalidPoolError as err:
        raise IncomingRefusal(str(err)) from err
    site = resolve_site(context.node_config, cfg)
    check_site_limits(cfg, site.limits)
    return cfg, site, pool, server_round


@app.query("stats")
def stats(msg: Message, context: Context) -> Message:
    """Round 0: release this site's anonymized statistics."""
    cfg, site, _, _ = _decode(msg, context)
    site_stats = release_site_stats(cfg, site)
    record = ConfigRecord({ConfigKey.STATS_JSON: site_stats.to_json()})
    return Message(RecordDict({RecordKey.STATS: record}), reply_to=msg)


def _round_inputs(msg: Message, context: Context) -> dict[str, Any]:
    """Decode and validate what train and evaluate both receive: a finite encoder of the
    run's shapes and a well-formed pool, or a refusal (client/incoming_checks.py)."""
    cfg, site, pool, server_round = _decode(msg, context)
    record = msg.content.array_records.get(RecordKey.ARRAYS)
    if record is None:
        raise IncomingRefusal(f"The server's message holds no {RecordKey.ARRAYS.value!r} record; "
                              "expected the global encoder.")
    global_arrays = record.to_torch_state_dict()
    check_global_arrays(global_arrays, expected_arrays(cfg))
    check_pool(pool, cfg)
    return {
        "cfg": cfg,
        "site": site,
        "global_arrays": global_arrays,
        "pool": pool,
        "server_round": server_round,
    }


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Rounds 1..R: local self-supervised training of the global encoder."""
    inputs = _round_inputs(msg, context)
    result = train_round(**inputs)
    wire = to_wire(result.arrays, inputs["cfg"].federation.transfer_dtype)
    content = RecordDict({
        RecordKey.ARRAYS: ArrayRecord({k: Array(v) for k, v in wire.items()}),
        RecordKey.METRICS: MetricRecord({**result.metrics}),
    })
    return Message(content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Held-out pretext loss of the current global encoder."""
    # Fixed crops whatever the round; the round only switches a task's warm-up stages.
    result = evaluate_round(**_round_inputs(msg, context))
    return Message(RecordDict({RecordKey.METRICS: MetricRecord({**result.metrics})}), reply_to=msg)
