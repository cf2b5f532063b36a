"""Encoder-only aggregation on top of Flower's own strategies."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from shared.config import RunConfig
from shared.keys import MetricKey, RecordKey
from shared.stats_schema import StatsPool
from shared.wire import encode_round_config

log = logging.getLogger("flwr.fedmm.server")


def _examples(metrics: MetricRecord) -> float:
    """The reply's ``num-examples`` (0 when missing or not a scalar)."""
    value = metrics.get(MetricKey.NUM_EXAMPLES, 0)
    return float(value) if isinstance(value, int | float) else 0.0


class EncoderFedAvg(FedAvg):
    """Flower's FedAvg over the global encoder entries only.

    * every message carries the run config and the statistics pool inside the one
      ``config`` record (Flower's DP mods reject a second ConfigRecord);
    * replies whose arrays are not exactly the global encoder entries, or that trained on
      zero examples, are left out of the average with a warning, instead of failing the
      whole round (Flower raises on inconsistent replies).

    Node sampling never blocks: the round protocol (server/protocol.py) waits for sites
    with a deadline, so ``min_*`` are 1 here and quorum is checked by the protocol.
    """

    def __init__(self, *, cfg: RunConfig, pool: StatsPool | None, global_names: Iterable[str]) -> None:
        super().__init__(
            fraction_train=1.0,
            fraction_evaluate=1.0,
            min_train_nodes=1,
            min_evaluate_nodes=1,
            min_available_nodes=1,
            weighted_by_key=MetricKey.NUM_EXAMPLES.value,
            arrayrecord_key=RecordKey.ARRAYS.value,
            configrecord_key=RecordKey.CONFIG.value,
        )
        self.cfg = cfg
        self.pool = pool
        self.global_names = frozenset(global_names)

    def _round_config(self) -> ConfigRecord:
        return ConfigRecord({**encode_round_config(self.cfg, self.pool)})

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        config = ConfigRecord({**config, **self._round_config()})
        return super().configure_train(server_round, arrays, config, grid)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        config = ConfigRecord({**config, **self._round_config()})
        return super().configure_evaluate(server_round, arrays, config, grid)

    def usable_train_replies(self, replies: Iterable[Message]) -> list[Message]:
        """Replies that can enter the average (errors are kept for Flower's logging)."""
        usable = []
        for msg in replies:
            if msg.has_error():
                usable.append(msg)
                continue
            arrays = msg.content.array_records.get(RecordKey.ARRAYS)
            metrics = msg.content.metric_records.get(RecordKey.METRICS)
            node = msg.metadata.src_node_id
            if arrays is None or set(arrays) != self.global_names:
                log.warning("Node %s sent arrays that are not the global encoder; ignored.", node)
                continue
            if metrics is None or _examples(metrics) <= 0:
                log.warning("Node %s trained on no examples this round; left out of the average.",
                            node)
                continue
            usable.append(msg)
        return usable

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        return super().aggregate_train(server_round, self.usable_train_replies(replies))

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        # A site whose held-out studies cannot serve the task reports 0 examples; a
        # weighted average over only such sites would divide by zero.
        usable = [
            m for m in replies
            if m.has_error()
            or _examples(m.content.metric_records[RecordKey.METRICS]) > 0
        ]
        return super().aggregate_evaluate(server_round, usable)
