"""Encoding of the per-round ConfigRecord both sides exchange (plain dicts; no flwr here)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.config import RunConfig, TrackingConfig
from shared.stats_schema import StatsPool
from shared.wire_keys import ConfigKey


def encode_round_config(cfg: RunConfig, pool: StatsPool | None) -> dict[str, str]:
    """The values of the ``config`` record sent with every message to a site.

    The ``tracking`` section is the server's own (an MLflow URI can carry credentials), so
    sites get its defaults.
    """
    sent = cfg.model_copy(update={"tracking": TrackingConfig()})
    out = {ConfigKey.RUN_CONFIG.value: sent.to_json()}
    if pool is not None:
        out[ConfigKey.STATS_POOL.value] = pool.to_json()
    return out


class InvalidPoolError(ValueError):
    """The statistics pool in a round's config does not validate (a site refuses the round)."""


def decode_round_config(record: Mapping[str, Any]) -> tuple[RunConfig, StatsPool | None, int]:
    """Validate the ``config`` record on arrival (the wire is an edge too).

    Returns:
        The run config, the statistics pool (None in round 0) and the server round (0 when
        the record has none, e.g. the statistics query).

    Raises:
        ConfigError: the run config does not validate.
        InvalidPoolError: the statistics pool does not validate (e.g. NaN or infinity).
    """
    if ConfigKey.RUN_CONFIG not in record:
        raise ValueError(
            f"message config has no {ConfigKey.RUN_CONFIG.value!r} entry (got keys "
            f"{sorted(record)}); server and site run different fedmm versions?"
        )
    cfg = RunConfig.from_json(str(record[ConfigKey.RUN_CONFIG]), source="run config from server")
    pool_json = record.get(ConfigKey.STATS_POOL)
    try:
        pool = StatsPool.from_json(str(pool_json)) if pool_json else None
    except ValueError as err:  # pydantic's ValidationError and JSONDecodeError are ValueErrors
        raise InvalidPoolError(f"the statistics pool from the server does not validate: {err}") from err
    server_round = int(record.get(ConfigKey.SERVER_ROUND, 0))
    return cfg, pool, server_round
