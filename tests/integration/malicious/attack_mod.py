"""A ClientApp mod that makes one virtual site malicious: it corrupts that site's replies.

Test-only. It is never part of fedmm's app: `app_copy.py` copies fedmm's app folder to a
temporary folder, adds this file and a plan (``client/campaign_plan.py``) to the copy, and
puts the mod outermost, around the error mod and the outgoing guard, so the corruption
happens after every check an honest site makes (a malicious site runs code of its own).
Each server round has its attack (``PLAN``); the site writes its node id to ``MARKER``
so the test knows whom ``metrics.json`` must name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp.typing import ClientAppCallable

# Both exist only in the campaign's app copy (tests/integration/malicious/app_copy.py).
from client.campaign_attacks import corrupt_stats, corrupt_train
from client.campaign_plan import MARKER, PARTITION, PLAN, SIGNFLIP_SCALE

ARRAYS, METRICS, CONFIG, STATS, STATS_JSON = "arrays", "metrics", "config", "site-stats", "json"


def _arrays(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: a.numpy() for k, a in record.items()}


def corrupt_replies(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Flower mod: the planned attack of this round on the bad partition's reply."""
    reply = call_next(msg, context)
    if int(context.node_config.get("partition-id", -1)) != PARTITION or reply.has_error():
        return reply
    Path(MARKER).write_text(str(context.node_id))
    server_round = int(msg.content[CONFIG].get("server-round", 0))
    attack = PLAN.get(server_round)
    kind = msg.metadata.message_type
    if attack is None:
        return reply
    if kind == "query.stats" and attack.startswith("stats-"):
        text = corrupt_stats(attack, str(reply.content[STATS][STATS_JSON]))
        return Message(RecordDict({STATS: ConfigRecord({STATS_JSON: text})}), reply_to=msg)
    if kind == "train" and not attack.startswith("stats-"):
        arrays, metrics = corrupt_train(attack, _arrays(msg.content[ARRAYS]),
                                        _arrays(reply.content[ARRAYS]), dict(reply.content[METRICS]),
                                        signflip_scale=SIGNFLIP_SCALE)
        return Message(RecordDict({ARRAYS: ArrayRecord({k: Array(v) for k, v in arrays.items()}),
                                   METRICS: MetricRecord(metrics)}), reply_to=msg)
    return reply
