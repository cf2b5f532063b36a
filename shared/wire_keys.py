"""Wire keys and message actions, defined once for server and client."""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    """Message types the ServerApp sends and the ClientApp routes."""

    STATS = "query.stats"
    TRAIN = "train"
    EVALUATE = "evaluate"


class RecordKey(StrEnum):
    """Keys of the records inside a message's RecordDict."""

    ARRAYS = "arrays"      # ArrayRecord: the global encoder parameters, nothing else
    CONFIG = "config"      # ConfigRecord: per-round settings + the statistics pool
    METRICS = "metrics"    # MetricRecord: numbers only, from METRIC_KEYS
    STATS = "site-stats"   # ConfigRecord: one anonymized SiteStats as JSON


class ConfigKey(StrEnum):
    """Keys inside the per-round ConfigRecord sent to sites."""

    SERVER_ROUND = "server-round"   # injected by Flower's strategies
    RUN_CONFIG = "run-config"       # the validated RunConfig as JSON
    STATS_POOL = "stats-pool"       # the anonymized StatsPool as JSON
    STATS_JSON = "json"             # inside RecordKey.STATS


class MetricKey(StrEnum):
    """The only metric names a site may send (the outgoing guard enforces it)."""

    NUM_EXAMPLES = "num-examples"
    TRAIN_LOSS = "train-loss"
    EVAL_LOSS = "eval-loss"
    SECONDS = "seconds"
    STEPS = "steps"
    SKIPPED = "skipped-studies"
    FEDEMA_MU = "fedema-mu"


def task_metric_key(base: MetricKey, task: str) -> str:
    """One pretext task's share of a loss metric, e.g. ``train-loss.modality_puzzle``."""
    return f"{base.value}.{task}"


#: Flower's own run_config key under which the whole RunConfig travels as JSON.
RUN_CONFIG_KEY = "fedmm-config"
