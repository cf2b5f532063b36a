"""The strategy factory and the encoder-only wrapper around each of Flower's strategies."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, Metadata, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAdam, FedAvg, FedAvgM, FedMedian, FedProx, FedTrimmedAvg
from flwr.supercore.task_identity import TaskIdentity

from server.strategy import STRATEGIES, EncoderFedAvg, EncoderOnly, build_strategy
from shared.config import RunConfig, StrategyName
from shared.wire_keys import ConfigKey, RecordKey

NAMES = ("encoder.a", "encoder.b")
GLOBAL = {"encoder.a": np.zeros(3, dtype=np.float32), "encoder.b": np.ones((2, 2), dtype=np.float32)}
FLOWER_CLASS = {
    "fedavg": FedAvg, "fedema": FedAvg, "fedprox": FedProx, "fedavgm": FedAvgM,
    "fedadam": FedAdam, "fedmedian": FedMedian, "fedtrimmedavg": FedTrimmedAvg,
}


class FakeGrid:
    """Just enough of a Grid for Flower's node sampling."""

    def get_node_ids(self) -> list[int]:
        return [11, 12, 13]


@pytest.fixture(autouse=True)
def _server_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    # A ServerApp process has these set; Flower's Message() reads them for instructions.
    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)


def config(name: str = "fedavg", **strategy: Any) -> RunConfig:
    return RunConfig.model_validate({"federation": {"strategy": {"name": name, **strategy}}})


def strategy_for(name: str, **settings: Any) -> EncoderOnly:
    return build_strategy(config(name, **settings), pool=None, global_names=NAMES)


def as_record(arrays: Mapping[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.asarray(v)) for k, v in arrays.items()})


def reply(node: int, arrays: Mapping[str, np.ndarray] | None, *, examples: int = 4) -> Message:
    """A hand-made train reply from ``node``, as the Grid would hand it to the strategy."""
    content = RecordDict({RecordKey.METRICS: MetricRecord({"num-examples": examples, "train-loss": 1.0})})
    if arrays is not None:
        content[RecordKey.ARRAYS] = as_record(arrays)
    return Message(content, metadata=metadata(node))


def error_reply(node: int) -> Message:
    return Message(Error(code=0, reason="Node Unavailable"), metadata=metadata(node))


def metadata(node: int) -> Metadata:
    return Metadata(run_id=1, message_id=f"r{node}", src_node_id=node, dst_node_id=0,
                    reply_to_message_id=f"m{node}", group_id="", created_at=0.0, ttl=60.0,
                    message_type="train")


def site(value: float) -> dict[str, np.ndarray]:
    """A site encoder whose every entry is ``value``."""
    return {k: np.full_like(v, value) for k, v in GLOBAL.items()}


def one_round(strategy: EncoderOnly, replies: list[Message], *, rnd: int = 1,
              current: Mapping[str, np.ndarray] = GLOBAL) -> dict[str, np.ndarray]:
    list(strategy.configure_train(rnd, as_record(current), ConfigRecord(), FakeGrid()))
    arrays, _ = strategy.aggregate_train(rnd, replies)
    assert arrays is not None
    return {k: a.numpy() for k, a in arrays.items()}


# ------------------------------------------------------------------------------ factory


def test_the_factory_knows_every_configurable_strategy() -> None:
    assert set(STRATEGIES) == set(get_args(StrategyName))


SETTINGS: dict[str, dict[str, Any]] = {
    "fedavg": {},
    "fedema": {"fedema_tau": 0.5},
    "fedprox": {"proximal_mu": 0.3},
    "fedavgm": {"server_learning_rate": 0.7, "server_momentum": 0.5},
    "fedadam": {"eta": 0.05, "eta_l": 0.2, "beta_1": 0.8, "beta_2": 0.95, "tau": 1e-4},
    "fedmedian": {},
    "fedtrimmedavg": {"trim_beta": 0.3},
}
FLOWER_ATTRS: dict[str, dict[str, Any]] = {
    "fedprox": {"proximal_mu": 0.3},
    "fedavgm": {"server_learning_rate": 0.7, "server_momentum": 0.5},
    "fedadam": {"eta": 0.05, "eta_l": 0.2, "beta_1": 0.8, "beta_2": 0.95, "tau": 1e-4},
    "fedtrimmedavg": {"beta": 0.3},
}


@pytest.mark.parametrize("name", list(get_args(StrategyName)))
def test_each_name_builds_its_flower_class_with_the_configs_parameters(name: str) -> None:
    strategy = strategy_for(name, **SETTINGS[name])
    assert isinstance(strategy, FLOWER_CLASS[name]) and isinstance(strategy, EncoderOnly)
    for attr, value in FLOWER_ATTRS.get(name, {}).items():
        assert getattr(strategy, attr) == pytest.approx(value), attr
    # the protocol samples and checks quorum itself
    assert (strategy.fraction_train, strategy.fraction_evaluate) == (1.0, 1.0)
    assert strategy.min_train_nodes == strategy.min_evaluate_nodes == strategy.min_available_nodes == 1
    assert strategy.weighted_by_key == "num-examples" and strategy.global_names == frozenset(NAMES)


def test_a_plain_strategy_name_is_accepted() -> None:
    cfg = RunConfig.model_validate({"federation": {"strategy": "fedprox"}})
    strategy = build_strategy(cfg, pool=None, global_names=NAMES)
    assert isinstance(strategy, FedProx) and strategy.proximal_mu == cfg.federation.strategy.proximal_mu


def test_fedema_is_fedavg_on_the_server() -> None:
    assert type(strategy_for("fedema")) is EncoderFedAvg


@pytest.mark.parametrize("name", list(get_args(StrategyName)))
def test_messages_carry_the_run_config_and_the_arrays_sent(name: str) -> None:
    strategy = strategy_for(name)
    msgs = list(strategy.configure_train(3, as_record(GLOBAL), ConfigRecord(), FakeGrid()))
    assert sorted(m.metadata.dst_node_id for m in msgs) == [11, 12, 13]
    cfg_record = msgs[0].content[RecordKey.CONFIG]
    assert RunConfig.from_json(str(cfg_record[ConfigKey.RUN_CONFIG])).federation.strategy.name == name
    assert cfg_record[ConfigKey.SERVER_ROUND] == 3
    assert list(msgs[0].content[RecordKey.ARRAYS]) == list(NAMES)
    assert ("proximal-mu" in cfg_record) == (name == "fedprox")
    evaluate = list(strategy.configure_evaluate(3, as_record(GLOBAL), ConfigRecord(), FakeGrid()))
    assert ConfigKey.RUN_CONFIG in evaluate[0].content[RecordKey.CONFIG]


# ------------------------------------------------------------------ encoder-only filter


@pytest.mark.parametrize("name", list(get_args(StrategyName)))
def test_bad_replies_are_left_out_for_every_strategy(name: str, caplog: pytest.LogCaptureFixture) -> None:
    good = [reply(1, site(1.0), examples=2), reply(2, site(3.0), examples=6)]
    bad = [
        reply(3, {**site(50.0), "encoder.head": np.zeros(2, dtype=np.float32)}),  # extra entry
        reply(4, {"encoder.a": site(50.0)["encoder.a"]}),                         # missing entry
        reply(5, {**site(50.0), "encoder.a": np.zeros(4, dtype=np.float32)}),     # wrong shape
        reply(6, site(50.0), examples=0),                                         # trained on nothing
        reply(7, None),                                                           # no arrays at all
        error_reply(8),
    ]
    with caplog.at_level(logging.WARNING, logger="flwr.fedmm.server"):
        mixed = one_round(strategy_for(name), [good[0], *bad, good[1]])
    clean = one_round(strategy_for(name), [reply(1, site(1.0), examples=2),
                                           reply(2, site(3.0), examples=6)])
    for key in NAMES:
        np.testing.assert_allclose(mixed[key], clean[key], rtol=1e-6)
        assert mixed[key].dtype == np.float32
        assert np.all(mixed[key] < 50.0)
    warned = " ".join(r.getMessage() for r in caplog.records)
    for node in (3, 4, 5, 6, 7):
        assert f"Node {node} " in warned


def test_only_bad_replies_leave_the_encoder_unaggregated() -> None:
    strategy = strategy_for("fedavg")
    list(strategy.configure_train(1, as_record(GLOBAL), ConfigRecord(), FakeGrid()))
    assert strategy.aggregate_train(1, [reply(3, {"encoder.x": np.zeros(1)}), error_reply(4)]) == (None, None)


def test_fedavg_weights_by_examples() -> None:
    replies = [reply(1, site(1.0), examples=1), reply(2, site(4.0), examples=3)]
    out = one_round(strategy_for("fedavg"), replies)
    np.testing.assert_allclose(out["encoder.b"], np.full((2, 2), (1.0 * 1 + 4.0 * 3) / 4))


def test_evaluation_replies_with_no_examples_are_dropped() -> None:
    strategy = strategy_for("fedavg")

    def ev(node: int, loss: float, examples: int) -> Message:
        return Message(RecordDict({RecordKey.METRICS: MetricRecord(
            {"num-examples": examples, "eval-loss": loss})}), metadata=metadata(node))

    metrics = strategy.aggregate_evaluate(1, [ev(1, 2.0, 1), ev(2, 4.0, 3), ev(3, 99.0, 0)])
    assert metrics is not None and metrics["eval-loss"] == pytest.approx((2.0 + 12.0) / 4)
    assert strategy.aggregate_evaluate(1, [ev(3, 99.0, 0)]) is None


# ------------------------------------------------------------------- robust aggregation


VALUES = [0.0, 1.0, 2.0, 10.0, -30.0]   # one outlier each way
EXAMPLES = [1, 100, 1, 1, 1]             # weights must not matter for median / trimmed mean


def five_sites() -> list[Message]:
    rng = np.random.default_rng(0)
    return [reply(i + 1, {k: (v + rng.normal(size=g.shape)).astype(np.float32) for k, g in GLOBAL.items()},
                  examples=n)
            for i, (v, n) in enumerate(zip(VALUES, EXAMPLES, strict=True))]


def stacked(replies: list[Message], key: str) -> np.ndarray:
    return np.stack([m.content[RecordKey.ARRAYS][key].numpy() for m in replies])


def test_fedmedian_is_the_coordinate_wise_median() -> None:
    replies = five_sites()
    expected = {k: np.median(stacked(replies, k), axis=0) for k in NAMES}
    out = one_round(strategy_for("fedmedian"), replies)
    for key in NAMES:
        np.testing.assert_allclose(out[key], expected[key], rtol=1e-6)


def test_fedtrimmedavg_cuts_one_from_each_end_of_five() -> None:
    replies = five_sites()
    # beta = 0.2 of 5 sites: drop the lowest and the highest value of every coordinate
    expected = {k: np.sort(stacked(replies, k), axis=0)[1:4].mean(axis=0) for k in NAMES}
    out = one_round(strategy_for("fedtrimmedavg", trim_beta=0.2), replies)
    for key in NAMES:
        np.testing.assert_allclose(out[key], expected[key], rtol=1e-5)


def test_fedtrimmedavg_with_three_sites_and_beta_0_2_trims_nothing() -> None:
    replies = five_sites()[:3]
    expected = {k: stacked(replies, k).mean(axis=0) for k in NAMES}
    out = one_round(strategy_for("fedtrimmedavg", trim_beta=0.2), replies)
    for key in NAMES:
        np.testing.assert_allclose(out[key], expected[key], rtol=1e-5)


# ---------------------------------------------------------------------- server optimizers


def test_fedavgm_momentum_overshoots_the_average_in_a_steady_direction() -> None:
    strategy = strategy_for("fedavgm", server_learning_rate=1.0, server_momentum=0.5)
    # round 1: from 0, sites average to 1 -> pseudo-gradient -1, momentum -1 -> 1
    r1 = one_round(strategy, [reply(1, site(1.0)), reply(2, site(1.0))], current=site(0.0))
    np.testing.assert_allclose(r1["encoder.a"], 1.0)
    # round 2: from 1, sites average to 2 -> pg -1, momentum 0.5 * -1 + -1 = -1.5 -> 2.5
    r2 = one_round(strategy, [reply(1, site(2.0)), reply(2, site(2.0))], rnd=2, current=r1)
    np.testing.assert_allclose(r2["encoder.a"], 2.5)
    np.testing.assert_allclose(r2["encoder.b"], 2.5)


def test_fedavgm_pairs_arrays_by_name_whatever_the_reply_order() -> None:
    strategy = strategy_for("fedavgm", server_learning_rate=0.5, server_momentum=0.0)
    target = {"encoder.a": np.full(3, 2.0, np.float32), "encoder.b": np.full((2, 2), 4.0, np.float32)}
    reordered = {k: target[k] for k in reversed(NAMES)}
    out = one_round(strategy, [reply(1, reordered)], current=site(0.0))
    np.testing.assert_allclose(out["encoder.a"], 1.0)   # half-way from 0 to 2
    np.testing.assert_allclose(out["encoder.b"], 2.0)   # half-way from 0 to 4


def test_fedadam_steps_towards_the_average_and_keeps_float32() -> None:
    eta, b1, b2, tau = 0.1, 0.9, 0.99, 1e-3
    strategy = strategy_for("fedadam", eta=eta, beta_1=b1, beta_2=b2, tau=tau)
    start = site(0.0)
    start["encoder.a"] = np.array([0.0, 5.0, -5.0], np.float32)
    out = one_round(strategy, [reply(1, site(1.0)), reply(2, site(1.0))], current=start)
    delta = 1.0 - start["encoder.a"]
    m, v = (1 - b1) * delta, (1 - b2) * delta**2
    eta_norm = eta * np.sqrt(1 - b2 ** 2) / (1 - b1 ** 2)   # Flower's bias correction at round 1
    np.testing.assert_allclose(out["encoder.a"], start["encoder.a"] + eta_norm * m / (np.sqrt(v) + tau),
                               rtol=1e-5)
    assert np.all(np.sign(out["encoder.a"] - start["encoder.a"]) == np.sign(delta))
    assert out["encoder.a"].dtype == np.float32 and out["encoder.b"].dtype == np.float32


def test_fedadam_keeps_its_moments_between_rounds() -> None:
    strategy = strategy_for("fedadam")
    r1 = one_round(strategy, [reply(1, site(1.0))], current=site(0.0))
    assert isinstance(strategy, FedAdam) and strategy.m_t is not None
    m1 = {k: v.copy() for k, v in strategy.m_t.items()}
    one_round(strategy, [reply(1, site(1.0))], rnd=2, current=r1)
    assert any(not np.allclose(m1[k], strategy.m_t[k]) for k in m1)


@pytest.mark.parametrize(("name", "warns"), [
    ("fedadam", True), ("fedavgm", True), ("fedavg", False), ("fedmedian", False),
])
def test_resume_warns_that_server_optimizer_state_starts_afresh(
    name: str, warns: bool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = RunConfig.model_validate({"out_dir": str(tmp_path), "resume": True,
                                    "federation": {"strategy": name}})
    with caplog.at_level(logging.WARNING, logger="flwr.fedmm.server"):
        build_strategy(cfg, pool=None, global_names=NAMES)
    assert any("not checkpointed" in r.getMessage() for r in caplog.records) == warns
