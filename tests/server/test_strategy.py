"""The strategy factory and the encoder-only wrapper around each of Flower's strategies."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, Metadata, MetricRecord, RecordDict
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
from flwr.supercore.task_identity import TaskIdentity

from server.strategy import STRATEGIES, EncoderFedAvg, EncoderOnly, build_strategy
from shared.config import RunConfig, StrategyConfig, StrategyName
from shared.wire_keys import ConfigKey, RecordKey

NAMES = ("encoder.a", "encoder.b")
GLOBAL = {"encoder.a": np.zeros(3, dtype=np.float32), "encoder.b": np.ones((2, 2), dtype=np.float32)}
FLOWER_CLASS = {
    "fedavg": FedAvg, "fedema": FedAvg, "fedprox": FedProx, "fedavgm": FedAvgM,
    "fedadam": FedAdam, "fedmedian": FedMedian, "fedtrimmedavg": FedTrimmedAvg,
    "krum": Krum, "multikrum": MultiKrum, "bulyan": Bulyan,
}
#: Enough sites for every strategy's minimum (Bulyan with f = 1 needs 7).
MIN_NODES = 7


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


def config(name: str = "fedavg", *, federation: Mapping[str, Any] | None = None,
           **strategy: Any) -> RunConfig:
    return RunConfig.model_validate({"federation": {"strategy": {"name": name, **strategy},
                                                    "min_nodes": MIN_NODES, **(federation or {})}})


def strategy_for(name: str, *, federation: Mapping[str, Any] | None = None,
                 **settings: Any) -> EncoderOnly:
    return build_strategy(config(name, federation=federation, **settings), pool=None,
                          global_names=NAMES)


#: No norm rule and no weight cap: for tests of Flower's own aggregation arithmetic.
UNCHECKED = {"max_update_norm_ratio": 1e12, "max_weight_ratio": 1e12}


def as_record(arrays: Mapping[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.asarray(v)) for k, v in arrays.items()})


def reply(node: int, arrays: Mapping[str, np.ndarray] | None, *, examples: object = 10) -> Message:
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
    union_names = {m.model_fields["name"].default for m in get_args(get_args(StrategyConfig)[0])}
    assert set(STRATEGIES) == set(get_args(StrategyName)) == union_names


SETTINGS: dict[str, dict[str, Any]] = {
    "fedavg": {},
    "fedema": {"fedema_tau": 0.5},
    "fedprox": {"proximal_mu": 0.3},
    "fedavgm": {"server_learning_rate": 0.7, "server_momentum": 0.5},
    "fedadam": {"eta": 0.05, "beta_1": 0.8, "beta_2": 0.95, "tau": 1e-4},
    "fedmedian": {},
    "fedtrimmedavg": {"trim_beta": 0.3},
    "krum": {"num_malicious_nodes": 1},
    "multikrum": {"num_malicious_nodes": 1, "num_nodes_to_select": 3},
    "bulyan": {"num_malicious_nodes": 1},
}
FLOWER_ATTRS: dict[str, dict[str, Any]] = {
    "fedprox": {"proximal_mu": 0.3},
    "fedavgm": {"server_learning_rate": 0.7, "server_momentum": 0.5},
    "fedadam": {"eta": 0.05, "beta_1": 0.8, "beta_2": 0.95, "tau": 1e-4},
    "fedtrimmedavg": {"beta": 0.3},
    "krum": {"num_malicious_nodes": 1, "num_nodes_to_select": 1},
    "multikrum": {"num_malicious_nodes": 1, "num_nodes_to_select": 3},
    "bulyan": {"num_malicious_nodes": 1},
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
    settings = cfg.federation.strategy
    assert isinstance(strategy, FedProx) and settings.name == "fedprox"
    assert strategy.proximal_mu == settings.proximal_mu


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


# ------------------------------------------------------------------ the server's checks


def undecodable(node: int) -> Message:
    """Declared float32 (2,) but the bytes are not a NumPy array."""
    record = ArrayRecord({"encoder.a": Array(dtype="float32", shape=(3,), stype="numpy.ndarray",
                                             data=b"not an array"),
                          "encoder.b": Array(np.ones((2, 2), np.float32))})
    return Message(RecordDict({RecordKey.ARRAYS: record, RecordKey.METRICS: MetricRecord(
        {"num-examples": 10})}), metadata=metadata(node))


def declared_float32_sent_float64(node: int) -> Message:
    record = ArrayRecord({"encoder.a": Array(dtype="float32", shape=(3,), stype="numpy.ndarray",
                                             data=Array(np.ones(3, np.float64)).data),
                          "encoder.b": Array(np.ones((2, 2), np.float32))})
    return Message(RecordDict({RecordKey.ARRAYS: record, RecordKey.METRICS: MetricRecord(
        {"num-examples": 10})}), metadata=metadata(node))


def good_replies() -> list[Message]:
    return [reply(1, site(1.0), examples=10), reply(2, site(3.0), examples=10),
            reply(3, site(2.0), examples=50)]


BAD: dict[int, Any] = {
    20: lambda n: reply(n, {**site(2.0), "encoder.head": np.zeros(2, dtype=np.float32)}),  # extra entry
    21: lambda n: reply(n, {"encoder.a": site(2.0)["encoder.a"]}),                         # missing entry
    22: lambda n: reply(n, {**site(2.0), "encoder.a": np.zeros(4, dtype=np.float32)}),     # wrong shape
    23: lambda n: reply(n, site(2.0), examples=0),                                         # no examples
    24: lambda n: reply(n, None),                                                          # no arrays at all
    25: lambda n: reply(n, {k: v.astype(np.float64) for k, v in site(2.0).items()}),       # float64
    26: lambda n: reply(n, {k: v.astype(np.float16) for k, v in site(2.0).items()}),       # float16
    27: lambda n: reply(n, {k: np.ones(v.shape, bool) for k, v in site(2.0).items()}),     # bool
    28: lambda n: reply(n, {**site(2.0), "encoder.a": np.array([0, np.nan, 0], np.float32)}),
    29: lambda n: reply(n, {**site(2.0), "encoder.b": np.full((2, 2), np.inf, np.float32)}),
    30: lambda n: reply(n, site(1e30)),                                                    # huge, finite
    31: lambda n: reply(n, {k: GLOBAL[k] - 40 * (v - GLOBAL[k]) for k, v in site(2.0).items()}),
    32: lambda n: reply(n, site(2.0), examples=float("nan")),
    33: lambda n: reply(n, site(2.0), examples=1e12),
    34: lambda n: reply(n, site(2.0), examples=7),                                         # not coarse
    35: undecodable,
    36: declared_float32_sent_float64,
}


@pytest.mark.parametrize("name", list(get_args(StrategyName)))
def test_bad_replies_are_rejected_for_every_strategy(name: str, caplog: pytest.LogCaptureFixture) -> None:
    good = good_replies()
    bad = [make(node) for node, make in BAD.items()]
    strategy = strategy_for(name)
    list(strategy.configure_train(1, as_record(GLOBAL), ConfigRecord(), FakeGrid()))
    with caplog.at_level(logging.WARNING, logger="flwr.fedmm.server"):
        screening = strategy.screen_train_replies(1, [good[0], *bad, error_reply(8), *good[1:]])
    assert sorted(v.node for v in screening.rejected) == sorted(str(n) for n in BAD)
    assert [m.metadata.src_node_id for m in screening.accepted] == [1, 2, 3]
    mixed = strategy.aggregate_screened(1, screening).arrays
    clean = one_round(strategy_for(name), good_replies())
    assert mixed is not None
    for key in NAMES:
        np.testing.assert_allclose(mixed[key].numpy(), clean[key], rtol=1e-6)
        assert mixed[key].numpy().dtype == np.float32 and np.all(mixed[key].numpy() < 50.0)
    warned = " ".join(r.getMessage() for r in caplog.records)
    for node in BAD:
        assert f"node {node}'s update rejected" in warned


def test_rejections_name_the_check() -> None:
    strategy = strategy_for("fedavg")
    list(strategy.configure_train(1, as_record(GLOBAL), ConfigRecord(), FakeGrid()))
    screening = strategy.screen_train_replies(1, [*good_replies(), *(make(n) for n, make in BAD.items())])
    checks = {v.node: str(v.rejected) for v in screening.rejected}
    assert checks == {"20": "not-the-encoder", "21": "not-the-encoder", "22": "not-the-encoder",
                      "23": "no-examples", "24": "unreadable", "25": "dtype", "26": "dtype",
                      "27": "dtype", "28": "non-finite", "29": "non-finite", "30": "norm-outlier",
                      "31": "norm-outlier", "32": "num-examples", "33": "num-examples",
                      "34": "num-examples", "35": "unreadable", "36": "dtype"}


def test_accepted_replies_carry_the_capped_weight_and_nothing_else() -> None:
    strategy = strategy_for("fedavg")
    list(strategy.configure_train(1, as_record(GLOBAL), ConfigRecord(), FakeGrid()))
    replies = [reply(1, site(1.0), examples=10), reply(2, site(1.0), examples=10),
               reply(3, site(1.0), examples=1000)]
    screening = strategy.screen_train_replies(1, replies)
    assert [dict(m.content[RecordKey.METRICS]) for m in screening.accepted] == [
        {"num-examples": 10.0}, {"num-examples": 10.0}, {"num-examples": 20.0}]
    assert all(set(m.content) == {RecordKey.ARRAYS, RecordKey.METRICS} for m in screening.accepted)
    # the replies themselves are left as received (the protocol logs their metrics)
    assert replies[2].content[RecordKey.METRICS]["num-examples"] == 1000


def test_a_site_claiming_many_examples_gets_at_most_the_capped_weight() -> None:
    # One site of three reports 1000 examples against 10: capped at 2 x the median weight.
    replies = [reply(1, site(1.0), examples=10), reply(2, site(1.0), examples=10),
               reply(3, site(4.0), examples=1000)]
    out = one_round(strategy_for("fedavg"), replies)
    np.testing.assert_allclose(out["encoder.a"], np.full(3, (1.0 * 10 + 1.0 * 10 + 4.0 * 20) / 40))


def test_only_bad_replies_leave_the_encoder_unaggregated() -> None:
    strategy = strategy_for("fedavg")
    list(strategy.configure_train(1, as_record(GLOBAL), ConfigRecord(), FakeGrid()))
    assert strategy.aggregate_train(1, [reply(3, {"encoder.x": np.zeros(1)}), error_reply(4)]) == (None, None)


def test_a_non_finite_aggregate_is_not_returned_and_the_server_state_is_kept() -> None:
    # FedAdam's step at eta = 1e40 overflows float32: the aggregate would be inf.
    strategy = strategy_for("fedadam", eta=1e40)
    assert isinstance(strategy, FedAdam)
    list(strategy.configure_train(1, as_record(GLOBAL), ConfigRecord(), FakeGrid()))
    screening = strategy.screen_train_replies(1, good_replies())
    assert len(screening.accepted) == 3
    result = strategy.aggregate_screened(1, screening)
    assert result.arrays is None and "NaN or infinity" in result.reason
    assert strategy.m_t is None and strategy.v_t is None   # moments as before the round


def test_bulyan_with_too_few_replies_says_why_it_did_not_aggregate() -> None:
    strategy = strategy_for("bulyan")   # f = 0: Flower needs 4f + 3 = 3 replies
    list(strategy.configure_train(1, as_record(GLOBAL), ConfigRecord(), FakeGrid()))
    result = strategy.aggregate_screened(1, strategy.screen_train_replies(1, good_replies()[:2]))
    assert result.arrays is None and "4f + 3" in result.reason


def test_fedavg_weights_by_examples() -> None:
    replies = [reply(1, site(1.0), examples=1), reply(2, site(4.0), examples=10)]
    out = one_round(strategy_for("fedavg", federation=UNCHECKED), replies)
    np.testing.assert_allclose(out["encoder.b"], np.full((2, 2), (1.0 * 1 + 4.0 * 10) / 11))


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
EXAMPLES = [1, 200, 1, 1, 1]             # weights must not matter for median / trimmed mean


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
    out = one_round(strategy_for("fedmedian", federation=UNCHECKED), replies)
    for key in NAMES:
        np.testing.assert_allclose(out[key], expected[key], rtol=1e-6)


def test_fedtrimmedavg_cuts_one_from_each_end_of_five() -> None:
    replies = five_sites()
    # beta = 0.2 of 5 sites: drop the lowest and the highest value of every coordinate
    expected = {k: np.sort(stacked(replies, k), axis=0)[1:4].mean(axis=0) for k in NAMES}
    out = one_round(strategy_for("fedtrimmedavg", federation=UNCHECKED, trim_beta=0.2), replies)
    for key in NAMES:
        np.testing.assert_allclose(out[key], expected[key], rtol=1e-5)


def test_fedtrimmedavg_with_three_sites_and_beta_0_2_trims_nothing() -> None:
    # Why federation.min_nodes must be >= 5 for trim_beta = 0.2 (tests/shared/test_config.py).
    replies = five_sites()[:3]
    expected = {k: stacked(replies, k).mean(axis=0) for k in NAMES}
    out = one_round(strategy_for("fedtrimmedavg", federation=UNCHECKED, trim_beta=0.2), replies)
    for key in NAMES:
        np.testing.assert_allclose(out[key], expected[key], rtol=1e-5)


def squared_distance(replies: list[Message], i: int, j: int) -> float:
    return sum(float(np.sum((stacked(replies, k)[i].astype(np.float64)
                             - stacked(replies, k)[j]) ** 2)) for k in NAMES)


def test_krum_returns_the_update_closest_to_its_neighbours() -> None:
    replies = five_sites()
    n, f = len(replies), 1
    scores = [sum(sorted(squared_distance(replies, i, j) for j in range(n) if j != i)[: n - f - 2])
              for i in range(n)]
    best = int(np.argmin(scores))
    out = one_round(strategy_for("krum", federation=UNCHECKED, num_malicious_nodes=f), replies)
    for key in NAMES:
        np.testing.assert_allclose(out[key], stacked(replies, key)[best], rtol=1e-6)
    assert VALUES[best] not in (10.0, -30.0)


def test_multikrum_averages_the_best_scored_updates_by_weight() -> None:
    replies = five_sites()
    n, f, m = len(replies), 1, 3
    scores = [sum(sorted(squared_distance(replies, i, j) for j in range(n) if j != i)[: n - f - 2])
              for i in range(n)]
    chosen = list(np.argsort(scores)[:m])
    weights = np.array([EXAMPLES[i] for i in chosen], np.float64)
    out = one_round(strategy_for("multikrum", federation=UNCHECKED, num_malicious_nodes=f,
                                 num_nodes_to_select=m), replies)
    for key in NAMES:
        expected = np.tensordot(weights / weights.sum(), stacked(replies, key)[chosen], axes=1)
        np.testing.assert_allclose(out[key], expected, rtol=1e-5)
    assert not {VALUES[i] for i in chosen} & {10.0, -30.0}


def test_bulyan_without_tolerated_sites_is_the_plain_mean() -> None:
    # f = 0: MultiKrum keeps all n, and the n values closest to the median are all of them.
    replies = five_sites()
    out = one_round(strategy_for("bulyan", federation=UNCHECKED), replies)
    for key in NAMES:
        np.testing.assert_allclose(out[key], stacked(replies, key).mean(axis=0), rtol=1e-5)


def test_bulyan_with_one_tolerated_site_of_seven_trims_around_the_median() -> None:
    rng = np.random.default_rng(1)
    values = [0.0, 0.5, 1.0, 1.5, 2.0, 40.0, -60.0]
    replies = [reply(i + 1, {k: (v + 0.1 * rng.normal(size=g.shape)).astype(np.float32)
                             for k, g in GLOBAL.items()}) for i, v in enumerate(values)]
    out = one_round(strategy_for("bulyan", federation=UNCHECKED, num_malicious_nodes=1), replies)
    for key in NAMES:   # within the honest sites' range; their plain mean would be about -2.1
        assert np.all((out[key] > -0.5) & (out[key] < 2.5)), out[key]


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
                                    "federation": {"strategy": name, "min_nodes": 3}})
    with caplog.at_level(logging.WARNING, logger="flwr.fedmm.server"):
        build_strategy(cfg, pool=None, global_names=NAMES)
    assert any("not checkpointed" in r.getMessage() for r in caplog.records) == warns
