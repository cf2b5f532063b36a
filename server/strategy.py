"""Encoder-only aggregation on top of Flower's own strategies, chosen by name from the config."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import (
    Bulyan,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    Krum,
    MultiKrum,
)

from server.update_checks import Candidate, Verdict, screen_round
from shared.config import RunConfig, StrategyConfig
from shared.lookup import look_up
from shared.stats_schema import StatsPool
from shared.wire import encode_round_config
from shared.wire_keys import MetricKey, RecordKey

log = logging.getLogger("flwr.fedmm.server")

#: Attributes in which Flower's server optimizers keep state between rounds (FedAvgM's
#: momentum, FedOpt's moments and current arrays); restored when a round is not committed.
_SERVER_STATE = ("current_arrays", "momentum_vector", "m_t", "v_t")


def _examples(metrics: MetricRecord | None) -> float:
    """The reply's ``num-examples`` (0 when missing or not a scalar)."""
    value = metrics.get(MetricKey.NUM_EXAMPLES, 0) if metrics is not None else 0
    return float(value) if isinstance(value, int | float) else 0.0


def _decoded(msg: Message) -> Candidate:
    """A training reply as the update checks see it; arrays that do not decode are None."""
    record = msg.content.array_records.get(RecordKey.ARRAYS)
    metrics = msg.content.metric_records.get(RecordKey.METRICS)
    arrays: dict[str, np.ndarray] | None
    try:
        arrays = {k: np.asarray(a.numpy()) for k, a in record.items()} if record is not None else None
    except Exception:  # a site can send any bytes under any declared dtype and shape
        arrays = None
    examples = metrics.get(MetricKey.NUM_EXAMPLES) if metrics is not None else None
    return Candidate(node=str(msg.metadata.src_node_id), arrays=arrays, num_examples=examples)


@dataclass(frozen=True)
class Screening:
    """A round's training replies after the server's checks.

    Attributes:
        accepted: the accepted replies, rebuilt to hold exactly the encoder arrays (in the
            order sent, as decoded) and ``num-examples`` as the capped weight.
        verdicts: one per reply that was not an error reply, accepted or not.
    """

    accepted: list[Message]
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def rejected(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.accepted]


@dataclass(frozen=True)
class RoundAggregate:
    """The new global arrays of a round, or None and why the previous ones are kept."""

    arrays: ArrayRecord | None
    reason: str = ""


class EncoderOnly(FedAvg):
    """What fedmm adds to any of Flower's FedAvg-family strategies (used as a mixin).

    Combine it *before* a Flower class, e.g. ``class EncoderFedAdam(EncoderOnly, FedAdam)``;
    the Flower class then does the aggregation and keeps its own server state (FedAvgM's
    momentum, FedAdam's moments) between ``aggregate_train`` calls.

    * every message carries the run config and the statistics pool inside the one
      ``config`` record (Flower's DP mods reject a second ConfigRecord);
    * every training reply is checked before aggregation (``server/update_checks.py``):
      exactly the encoder entries sent, same shapes, the run's transfer dtype (cast back
      to the dtypes sent, so aggregation is float32), finite, a coarse
      ``num-examples``, an update norm that is not an outlier; a failing reply is left out
      with a logged reason (the round protocol writes it to metrics.json) instead of
      failing the round or entering the aggregate;
    * accepted replies are rebuilt: arrays in the order the server sent (FedAvgM pairs old
      and new arrays by position) and ``num-examples`` replaced by the capped weight;
    * an aggregate that is not finite is never returned: the strategy's server state is
      restored and the round keeps the previous encoder; the aggregate is cast back to
      the sent dtypes (FedAdam's float64 step size would otherwise make it float64);
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
        # The arrays sent in the last configure_train, in order (the reference of the checks).
        self._sent: dict[str, np.ndarray] = {}

    def _round_config(self) -> ConfigRecord:
        return ConfigRecord({**encode_round_config(self.cfg, self.pool)})

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._sent = {k: np.asarray(a.numpy()) for k, a in arrays.items()}
        config = ConfigRecord({**config, **self._round_config()})
        return super().configure_train(server_round, arrays, config, grid)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        config = ConfigRecord({**config, **self._round_config()})
        return super().configure_evaluate(server_round, arrays, config, grid)

    def screen_train_replies(self, server_round: int, replies: Iterable[Message]) -> Screening:
        """Check the round's training replies (error replies are passed over).

        The reference is what ``configure_train`` sent, restricted to the global entries.
        """
        sent = {k: v for k, v in self._sent.items() if k in self.global_names}
        candidates = [(m, _decoded(m)) for m in replies if not m.has_error()]
        fed = self.cfg.federation
        verdicts = screen_round([c for _, c in candidates], sent=sent,
                                max_update_norm_ratio=fed.max_update_norm_ratio,
                                max_weight_ratio=fed.max_weight_ratio,
                                transfer_dtype=fed.transfer_dtype)
        accepted = []
        for (msg, _), verdict in zip(candidates, verdicts, strict=True):
            if not verdict.accepted or verdict.arrays is None:  # accepted ones have arrays
                log.warning("Round %d: node %s's update rejected (%s): %s", server_round,
                            verdict.node, verdict.rejected, verdict.reason)
                continue
            decoded = verdict.arrays  # cast back from federation.transfer_dtype: fp32 aggregation
            content = RecordDict({
                RecordKey.ARRAYS: ArrayRecord({k: Array(decoded[k]) for k in sent}),
                RecordKey.METRICS: MetricRecord({MetricKey.NUM_EXAMPLES: verdict.weight}),
            })
            # A new message with the reply's metadata (Flower's own way to rebuild one): the
            # reply itself stays as received, for the protocol's metrics.
            accepted.append(Message(content=content, metadata=msg.metadata))  # type: ignore[call-overload]
        return Screening(accepted=accepted, verdicts=verdicts)

    def aggregate_screened(self, server_round: int, screening: Screening) -> RoundAggregate:
        """Aggregate the accepted replies; a missing or non-finite aggregate keeps the
        previous encoder (the reason says why) and leaves the server state as it was."""
        settings = self.cfg.federation.strategy
        count = len(screening.accepted)
        if count == 0:
            return RoundAggregate(None, "no reply was accepted")
        if count < settings.min_sites():
            log.warning("Round %d: %d accepted replies, fewer than the %d that %r needs to outvote "
                        "a bad site (%s).", server_round, count, settings.min_sites(),
                        settings.name, settings.why_min_sites())
        saved = {k: copy.deepcopy(getattr(self, k)) for k in _SERVER_STATE if hasattr(self, k)}
        arrays, _ = super().aggregate_train(server_round, screening.accepted)
        reason = ""
        if arrays is None:
            reason = (f"{settings.name} did not aggregate the {count} accepted replies "
                      f"({settings.why_min_sites()})")
        else:
            arrays = self._as_sent(arrays)  # a float64 step may overflow float32: check after
            bad = [k for k, a in arrays.items() if not np.isfinite(a.numpy()).all()]
            if bad:
                reason = (f"the aggregate has NaN or infinity in {len(bad)} of {len(arrays)} "
                          f"entries (e.g. {bad[0]!r}); the previous encoder is kept")
        if reason:
            for key, value in saved.items():
                setattr(self, key, value)
            log.warning("Round %d is not aggregated: %s.", server_round, reason)
            return RoundAggregate(None, reason)
        return RoundAggregate(arrays)

    def _as_sent(self, arrays: ArrayRecord) -> ArrayRecord:
        """``arrays`` with the dtypes of the arrays the server sent this round."""
        out = {}
        for key, array in arrays.items():
            want = self._sent[key].dtype if key in self._sent else np.dtype(array.dtype)
            values = array.numpy()
            if values.dtype == want:
                out[key] = array
                continue
            if np.issubdtype(want, np.integer):
                values = np.rint(values)  # averaged counters: round, do not truncate
            with np.errstate(over="ignore", invalid="ignore"):  # checked for finiteness after
                out[key] = Array(np.asarray(values.astype(want)))
        return ArrayRecord(out)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Flower's entry point: screen the replies, then aggregate the accepted ones."""
        result = self.aggregate_screened(server_round, self.screen_train_replies(server_round, replies))
        return result.arrays, None

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
    """Coordinate-wise trimmed mean, ``int(beta * n)`` cut from each end (Yin et al., 2018)."""


class EncoderKrum(EncoderOnly, Krum):
    """Krum (Blanchard et al., NeurIPS 2017): the update with the smallest summed squared
    distance to its ``n - f - 2`` nearest neighbours is the new encoder."""


class EncoderMultiKrum(EncoderOnly, MultiKrum):
    """MultiKrum (Blanchard et al., 2017): the ``m`` best-scored updates, averaged by weight."""


class EncoderBulyan(EncoderOnly, Bulyan):
    """Bulyan (El Mhamdi et al., ICML 2018): MultiKrum selects ``n - 2f`` updates, then each
    coordinate averages the ``n - 4f`` values closest to their median."""


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
    options: Callable[[Any], dict[str, Any]]
    server_state: Callable[[Any], bool] = lambda s: False


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
        lambda s: {"eta": s.eta, "beta_1": s.beta_1, "beta_2": s.beta_2, "tau": s.tau},
        server_state=lambda s: True,
    ),
    "fedmedian": StrategySpec(EncoderFedMedian, lambda s: {}),
    "fedtrimmedavg": StrategySpec(EncoderFedTrimmedAvg, lambda s: {"beta": s.trim_beta}),
    "krum": StrategySpec(EncoderKrum, lambda s: {"num_malicious_nodes": s.num_malicious_nodes}),
    "multikrum": StrategySpec(
        EncoderMultiKrum,
        lambda s: {"num_malicious_nodes": s.num_malicious_nodes,
                   "num_nodes_to_select": s.num_nodes_to_select},
    ),
    "bulyan": StrategySpec(EncoderBulyan, lambda s: {"num_malicious_nodes": s.num_malicious_nodes}),
}


def build_strategy(cfg: RunConfig, *, pool: StatsPool | None,
                   global_names: Iterable[str]) -> EncoderOnly:
    """The encoder-only Flower strategy named by ``cfg.federation.strategy``.

    On resume, a strategy that keeps server optimizer state (FedAvgM with momentum,
    FedAdam) starts that state afresh, because checkpoints hold only the encoder; this
    is logged as a warning.
    """
    settings: StrategyConfig = cfg.federation.strategy
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
