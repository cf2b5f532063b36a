"""Update DP: Flower's fixed-clipping wrappers around fedmm's strategy, and the round accounting."""

from __future__ import annotations

import math

import numpy as np
import pytest
from flwr.app import ConfigRecord
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM
from flwr.supercore.privacy_accounting import (
    GaussianPrivacyEvent,
    NeighboringRelation,
    PrivacyConfig,
    SamplingMethod,
)
from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

from server.update_privacy import PrivacyBudgetReached, UpdatePrivacy, equal_weights
from shared.config import UpdatePrivacyConfig
from shared.wire_keys import RecordKey
from tests.server.test_strategy import (  # noqa: F401 (_server_identity: an autouse fixture)
    GLOBAL,
    FakeGrid,
    _server_identity,
    as_record,
    error_reply,
    reply,
    site,
    strategy_for,
)


def dp(**settings: object) -> UpdatePrivacy:
    return UpdatePrivacy(UpdatePrivacyConfig.model_validate({"enabled": True, **settings}), population=3)


def reference_epsilon(*noise_multipliers: float, delta: float = 1e-3) -> float:
    accountant = RdpAccountant(PrivacyConfig(
        target_delta=delta, population_size=3, neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
        sampling_method=SamplingMethod.NO_AMPLIFICATION))
    for z in noise_multipliers:
        accountant.compose(GaussianPrivacyEvent(noise_multiplier=z, sample_size=3, population_size=3))
    return accountant.get_privacy_spent().epsilon


def test_a_full_round_is_accounted_with_the_configured_noise() -> None:
    update_dp = dp(noise_multiplier=1.5)
    first = update_dp.released(sites=3, sampled=3)
    assert first.noise_multiplier == 1.5 and math.isclose(first.epsilon, reference_epsilon(1.5))
    second = update_dp.released(sites=3, sampled=3)
    assert math.isclose(second.epsilon, reference_epsilon(1.5, 1.5)) and second.epsilon > first.epsilon


def test_a_round_averaging_fewer_sites_costs_more() -> None:
    # noise calibrated for 3 sites, average of 2: sensitivity C/2, so z_eff = z * 2 / 3
    partial = dp(noise_multiplier=1.5).released(sites=2, sampled=3)
    assert math.isclose(partial.noise_multiplier, 1.0)
    assert math.isclose(partial.epsilon, reference_epsilon(1.0)) and partial.epsilon > reference_epsilon(1.5)


def test_the_budget_stops_the_round_that_would_pass_it_and_resume_recomposes() -> None:
    budget = (reference_epsilon(1.0, 1.0) + reference_epsilon(1.0, 1.0, 1.0)) / 2
    update_dp = dp(noise_multiplier=1.0, max_epsilon=budget)
    rounds = []
    for _ in range(2):
        update_dp.check_budget(3)
        rounds.append(update_dp.released(sites=3, sampled=3))
    with pytest.raises(PrivacyBudgetReached, match=r"max_epsilon"):
        update_dp.check_budget(3)
    resumed = UpdatePrivacy(update_dp.cfg, population=3, history=rounds)
    assert math.isclose(resumed.summary()["epsilon"], rounds[-1].epsilon)
    with pytest.raises(PrivacyBudgetReached):
        resumed.check_budget(3)


def test_equal_weights_drop_errors_and_weigh_every_site_one() -> None:
    kept = equal_weights([reply(1, site(1.0), examples=200), error_reply(2),
                          reply(3, site(2.0), examples=10)])
    assert [m.metadata.src_node_id for m in kept] == [1, 3]
    assert [m.content.metric_records[RecordKey.METRICS]["num-examples"] for m in kept] == [1, 1]


def norm(arrays: dict[str, np.ndarray], base: dict[str, np.ndarray]) -> float:
    return float(np.sqrt(sum(float(np.sum((arrays[k] - base[k]) ** 2)) for k in base)))


def test_server_side_clipping_bounds_each_update_and_adds_calibrated_noise() -> None:
    update_dp = dp(clipping="server", clipping_norm=0.5, noise_multiplier=1e-6)
    inner = strategy_for("fedavg")
    wrapped = update_dp.wrap(inner, sampled=2)
    list(wrapped.configure_train(1, as_record(GLOBAL), ConfigRecord(), FakeGrid()))
    up = {k: v + 10.0 for k, v in GLOBAL.items()}
    down = {k: v - 10.0 for k, v in GLOBAL.items()}
    screening = inner.screen_train_replies(1, [reply(1, up), reply(2, down)])
    arrays = update_dp.aggregate(wrapped, 1, screening.accepted, sampled=2).arrays
    assert arrays is not None
    result = {k: v.numpy() for k, v in arrays.items()}
    # opposite updates average to nothing; one site alone moves the encoder by its clipped
    # update, norm 0.5 (it sent a move of norm 10 x sqrt(7))
    single = update_dp.wrap(inner, sampled=1)
    list(single.configure_train(2, as_record(GLOBAL), ConfigRecord(), FakeGrid()))
    alone = update_dp.aggregate(single, 2, inner.screen_train_replies(2, [reply(1, site(10.0))]).accepted,
                                sampled=1).arrays
    assert alone is not None
    assert math.isclose(norm({k: v.numpy() for k, v in alone.items()}, GLOBAL), 0.5, rel_tol=1e-3)
    assert norm(result, GLOBAL) < 1e-3


def test_client_side_clipping_sends_the_norm_to_the_sites() -> None:
    update_dp = dp(clipping="client", clipping_norm=0.25)
    wrapped = update_dp.wrap(strategy_for("fedavg"), sampled=3)
    messages = list(wrapped.configure_train(1, as_record(GLOBAL), ConfigRecord(), FakeGrid()))
    assert messages and all(m.content.config_records[RecordKey.CONFIG][KEY_CLIPPING_NORM] == 0.25
                            for m in messages)


@pytest.mark.parametrize("name", ["fedmedian", "fedtrimmedavg", "fedavgm", "fedadam", "krum", "multikrum",
                                  "bulyan"])
def test_update_dp_is_refused_for_strategies_that_are_not_a_plain_mean(name: str) -> None:
    from shared.config import ConfigError, validate_run_config

    with pytest.raises(ConfigError, match="averages the sites' updates"):
        validate_run_config({"privacy": {"updates": {"enabled": True}},
                             "federation": {"strategy": name, "min_nodes": 5}}, source="test")
    validate_run_config({"privacy": {"updates": {"enabled": True}}, "federation": {"strategy": "fedprox"}},
                        source="test")
