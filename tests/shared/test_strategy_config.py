"""federation.strategy: one config per strategy, its own settings only, and the sites it needs."""

from __future__ import annotations

from typing import Any, get_args

import pytest

from shared.config import ConfigError, RunConfig, StrategyConfig, validate_run_config

MEMBERS = get_args(get_args(StrategyConfig)[0])


def federation(strategy: Any, **more: Any) -> dict[str, Any]:
    return {"federation": {"strategy": strategy, "min_nodes": 9, **more}}


@pytest.mark.parametrize("member", MEMBERS, ids=lambda m: m.__name__)
def test_every_strategy_round_trips_through_json(member: type) -> None:
    cfg = validate_run_config(federation({"name": member.model_fields["name"].default}), source="t")
    assert type(cfg.federation.strategy) is member
    assert RunConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize(("name", "foreign"), [
    ("fedavg", "proximal_mu"), ("fedema", "tau"), ("fedadam", "fedema_tau"), ("fedadam", "eta_l"),
    ("fedprox", "server_momentum"), ("fedmedian", "trim_beta"), ("fedtrimmedavg", "beta_1"),
    ("krum", "num_nodes_to_select"), ("bulyan", "trim_beta"),
], ids=lambda v: str(v))
def test_a_setting_of_another_strategy_is_an_error(name: str, foreign: str) -> None:
    with pytest.raises(ConfigError, match=rf"federation\.strategy\.{name}\.{foreign}: unknown setting"
                                          r"\. Known settings here: \[.*'name'"):
        validate_run_config(federation({"name": name, foreign: 0.5}), source="t")


def test_each_strategy_validates_its_own_values() -> None:
    with pytest.raises(ConfigError, match=r"fedtrimmedavg\.trim_beta.*got 0\.5"):
        validate_run_config(federation({"name": "fedtrimmedavg", "trim_beta": 0.5}), source="t")
    with pytest.raises(ConfigError, match=r"krum\.num_malicious_nodes.*got -1"):
        validate_run_config(federation({"name": "krum", "num_malicious_nodes": -1}), source="t")


def test_a_bare_name_and_a_table_without_name_still_work() -> None:
    cfg = validate_run_config({"federation": {"strategy": "fedprox"}}, source="t")
    assert cfg.federation.strategy.name == "fedprox"
    cfg = validate_run_config({"federation": {"strategy": {}}}, source="t")
    assert cfg.federation.strategy.name == "fedavg"
    assert RunConfig().federation.strategy.name == "fedavg"


def test_an_unknown_strategy_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"'fedmedain'.*'fedmedian'.*'bulyan'"):
        validate_run_config({"federation": {"strategy": "fedmedain"}}, source="t")


@pytest.mark.parametrize(("strategy", "needed"), [
    ("fedavg", 1), ("fedprox", 1), ("fedadam", 1),
    ("fedmedian", 3),
    ({"name": "fedtrimmedavg", "trim_beta": 0.2}, 5),
    ({"name": "fedtrimmedavg", "trim_beta": 0.34}, 3),
    ({"name": "fedtrimmedavg", "trim_beta": 0.1}, 10),
    ({"name": "krum"}, 3), ({"name": "krum", "num_malicious_nodes": 1}, 5),
    ({"name": "multikrum", "num_malicious_nodes": 1, "num_nodes_to_select": 3}, 5),
    ({"name": "multikrum", "num_malicious_nodes": 1, "num_nodes_to_select": 5}, 6),
    ({"name": "bulyan"}, 3), ({"name": "bulyan", "num_malicious_nodes": 1}, 7),
], ids=lambda v: str(v))
def test_min_nodes_must_reach_the_strategys_minimum(strategy: Any, needed: int) -> None:
    cfg = validate_run_config({"federation": {"strategy": strategy, "min_nodes": needed}}, source="t")
    assert cfg.federation.strategy.min_sites() == needed
    if needed > 1:
        with pytest.raises(ConfigError, match=rf"needs at least {needed} sites .*got min_nodes = "
                                              rf"{needed - 1}\. Fix: set federation\.min_nodes = {needed}"):
            validate_run_config({"federation": {"strategy": strategy, "min_nodes": needed - 1}},
                                source="t")


@pytest.mark.parametrize("beta", [0.05, 0.2, 0.25, 0.3, 0.34, 0.49])
def test_the_trimmed_mean_minimum_is_where_flower_first_cuts_a_value(beta: float) -> None:
    import numpy as np
    from flwr.serverapp.strategy.fedtrimmedavg import trim_mean

    n = validate_run_config(federation({"name": "fedtrimmedavg", "trim_beta": beta}, min_nodes=99),
                            source="t").federation.strategy.min_sites()
    outlier = np.array([[0.0]] * (n - 1) + [[1e6]])
    assert trim_mean(outlier, beta)[0] == 0.0          # n sites: the outlier is cut
    assert trim_mean(outlier[1:], beta)[0] == pytest.approx(1e6 / (n - 1))  # n - 1: no cut


@pytest.mark.parametrize(("field", "value"), [("max_update_norm_ratio", 1.0),
                                              ("max_update_norm_ratio", float("nan")),
                                              ("max_weight_ratio", 0.5),
                                              ("max_weight_ratio", float("inf"))])
def test_update_check_settings_are_bounded_and_finite(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=rf"federation\.{field}"):
        validate_run_config({"federation": {field: value}}, source="t")
