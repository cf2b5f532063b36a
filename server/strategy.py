"""Encoder-only aggregation on top of Flower's own strategies, chosen by name from the config."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import (
    FedAdam,
    FedAvg,
    FedAvgM,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
)

from shared.config import RunConfig, StrategyConfig
from shared.lookup import look_up
from shared.stats_schema import StatsPool
from shared.wire import encode_round_config
from shared.wire_keys import MetricKey, RecordKey

log = logging.getLogger("flwr.fedmm.server")


def _examples(metrics: MetricRecord | None) -> float:
    """The reply's ``num-examples`` (0 when missing or not a scalar)."""
    value = metrics.get(MetricKey.NUM_EXAMPLES, 0) if metrics is not None else 0
    return float(value) if isinstance(value, int | float) else 0.0


class EncoderOnly(FedAvg):
    """What fedmm adds to any of Flower's FedAvg-family strategies (used as a mixin).

    Combine it *before* a Flower class, e.g. ``class EncoderFedAdam(EncoderOnly, FedAdam)``;
    the Flower class then does the aggregation and keeps its own server state (FedAvgM's
    momentum, FedAdam's moments) between ``aggregate_train`` calls.

    * every message carries the run config and the statistics pool inside the one
      ``config`` record (Flower's DP mods reject a second ConfigRecord);
    * replies whose arrays are not exactly the global encoder entries (names and shapes
      of what was sent), or that trained on zero examples, are left out of the
      aggregate with a warning, instead of failing the whole round (Flower raises on
      inconsistent replies);
    * usable replies are re-keyed in the order the server sent, because FedAvgM pairs
      old and new arrays by position, and the aggregate is cast back to the sent dtypes
      (FedAdam's float64 step size would otherwise turn the encoder into float64);
    * evaluation replies with zero examples are dropped before the weighted average.

    Node sampling never blocks: the round protocol (server/protocol.py) waits for sites
    with a deadline, so ``min_*`` are 1 and fractions 1.0 here; quorum is checked by the
    protocol.
    """

    def __init__(self, *, cfg: RunConfig, pool: StatsPool | None, global_names: Iterable[str],
                 **options: Any) -> None:
        super().__init__(
            fraction_train=1.0,
            fraction_evaluate=1.0,
            min_train_nodes=1,
            min_evaluate_nodes=1,
            min_available_nodes=1,
            weighted_by_key=MetricKey.NUM_EXAMPLES.value,
            arrayrecord_key=RecordKey.ARRAYS.value,
            configrecord_key=RecordKey.CONFIG.value,
            **options,
        )
        self.cfg = cfg
        self.pool = pool
        self.global_names = frozenset(global_names)
        # (name, shape, dtype) of the arrays sent in the last configure_train, in order.
        self._sent: list[tuple[str, tuple[int, ...], str]] = []

    def _round_config(self) -> ConfigRecord:
        return ConfigRecord({**encode_round_config(self.cfg, self.pool)})

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._sent = [(k, tuple(a.shape), a.dtype) for k, a in arrays.items()]
        config = ConfigRecord({**config, **self._round_config()})
        return super().configure_train(server_round, arrays, config, grid)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        config = ConfigRecord({**config, **self._round_config()})
        return super().configure_evaluate(server_round, arrays, config, grid)

    def _fits(self, arrays: ArrayRecord) -> bool:
        if set(arrays) != self.global_names:
            return False
        return all(tuple(arrays[k].shape) == shape for k, shape, _ in self._sent if k in arrays)

    def usable_train_replies(self, replies: Iterable[Message]) -> list[Message]:
        """Replies that can enter the aggregate (errors are kept for Flower's logging).

        Usable replies have their ArrayRecord rebuilt in the order the server sent.
        """
        order = [k for k, _, _ in self._sent] or sorted(self.global_names)
        usable = []
        for msg in replies:
            if msg.has_error():
                usable.append(msg)
                continue
            arrays = msg.content.array_records.get(RecordKey.ARRAYS)
            metrics = msg.content.metric_records.get(RecordKey.METRICS)
            node = msg.metadata.src_node_id
            if arrays is None or not self._fits(arrays):
                log.warning("Node %s sent arrays that are not the global encoder; ignored.", node)
                continue
            if _examples(metrics) <= 0:
                log.warning("Node %s trained on no examples this round; left out of the average.",
                            node)
                continue
            if list(arrays) != order:
                msg.content[RecordKey.ARRAYS] = ArrayRecord({k: arrays[k] for k in order})
            usable.append(msg)
        return usable

    def _as_sent(self, arrays: ArrayRecord) -> ArrayRecord:
        """``arrays`` with the dtypes of the arrays the server sent this round."""
        dtypes = {k: d for k, _, d in self._sent}
        out = {}
        for key, array in arrays.items():
            want = dtypes.get(key, array.dtype)
            if array.dtype == want:
                out[key] = array
                continue
            values = array.numpy()
            if np.issubdtype(np.dtype(want), np.integer):
                values = np.rint(values)  # averaged counters: round, do not truncate
            out[key] = Array(np.asarray(values.astype(want)))
        return ArrayRecord(out)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        arrays, metrics = super().aggregate_train(server_round, self.usable_train_replies(replies))
        return (self._as_sent(arrays) if arrays is not None else None), metrics

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        # A site whose held-out studies cannot serve the task reports 0 examples; a
        # weighted average over only such sites would divide by zero.
        usable = [
            m for m in replies
            if m.has_error() or _examples(m.content.metric_records.get(RecordKey.METRICS)) > 0
        ]
        return super().aggregate_evaluate(server_round, usable)


class EncoderFedAvg(EncoderOnly, FedAvg):
    """FedAvg (McMahan et al., AISTATS 2017) of the global encoder entries."""


class EncoderFedProx(EncoderOnly, FedProx):
    """FedAvg on the server; each site adds ``mu/2 ||w - w_g||^2`` (client/fedprox.py)."""


class EncoderFedAvgM(EncoderOnly, FedAvgM):
    """FedAvg with server momentum (Hsu et al., 2019); the momentum lives in the server."""


class EncoderFedAdam(EncoderOnly, FedAdam):
    """Adam on the server over the averaged update (Reddi et al., ICLR 2021)."""


class EncoderFedMedian(EncoderOnly, FedMedian):
    """Coordinate-wise median of the site encoders (Yin et al., ICML 2018)."""


class EncoderFedTrimmedAvg(EncoderOnly, FedTrimmedAvg):
    """Coordinate-wise trimmed mean, ``floor(beta * n)`` cut from each end (Yin et al., 2018)."""


@dataclass(frozen=True)
class StrategySpec:
    """How one ``federation.strategy.name`` is built.

    Attributes:
        cls: the encoder-only Flower strategy class.
        options: the Flower constructor arguments taken from the StrategyConfig.
        server_state: whether the strategy keeps optimizer state on the server between
            rounds (lost on resume; checkpoints hold only the encoder).
    """

    cls: type[EncoderOnly]
    options: Callable[[StrategyConfig], dict[str, Any]]
    server_state: Callable[[StrategyConfig], bool] = lambda s: False


STRATEGIES: dict[str, StrategySpec] = {
    "fedavg": StrategySpec(EncoderFedAvg, lambda s: {}),
    # FedEMA (Zhuang et al., ICLR 2022) averages on the server; the blending is on the site.
    "fedema": StrategySpec(EncoderFedAvg, lambda s: {}),
    "fedprox": StrategySpec(EncoderFedProx, lambda s: {"proximal_mu": s.proximal_mu}),
    "fedavgm": StrategySpec(
        EncoderFedAvgM,
        lambda s: {"server_learning_rate": s.server_learning_rate,
                   "server_momentum": s.server_momentum},
        server_state=lambda s: s.server_momentum > 0,
    ),
    "fedadam": StrategySpec(
        EncoderFedAdam,
        lambda s: {"eta": s.eta, "eta_l": s.eta_l, "beta_1": s.beta_1, "beta_2": s.beta_2,
                   "tau": s.tau},
        server_state=lambda s: True,
    ),
    "fedmedian": StrategySpec(EncoderFedMedian, lambda s: {}),
    "fedtrimmedavg": StrategySpec(EncoderFedTrimmedAvg, lambda s: {"beta": s.trim_beta}),
}


def build_strategy(cfg: RunConfig, *, pool: StatsPool | None,
                   global_names: Iterable[str]) -> EncoderOnly:
    """The encoder-only Flower strategy named by ``cfg.federation.strategy``.

    On resume, a strategy that keeps server optimizer state (FedAvgM with momentum,
    FedAdam) starts that state afresh, because checkpoints hold only the encoder; this
    is logged as a warning.
    """
    settings = cfg.federation.strategy
    spec = look_up(settings.name, STRATEGIES, kind="federation strategy",
                   fix="Set federation.strategy.name to one of them.")
    if cfg.resume and spec.server_state(settings):
        log.warning(
            "Resuming with strategy %r: its server optimizer state (%s) is not checkpointed "
            "and starts afresh from the resumed encoder, so the rounds after the resume are "
            "not identical to an uninterrupted run.", settings.name,
            "momentum buffer" if settings.name == "fedavgm" else "Adam moments m_t and v_t",
        )
    return spec.cls(cfg=cfg, pool=pool, global_names=global_names, **spec.options(settings))
