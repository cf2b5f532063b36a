"""Every scenario file validates through the same config models as `simulate --config`."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import ConfigError
from simulations.scenario import build_scenario, read_scenario_file

SCENARIOS = sorted((Path(__file__).resolve().parents[2] / "simulations" / "scenarios").glob("*.toml"))


def test_the_documented_scenarios_exist() -> None:
    names = {p.name for p in SCENARIOS}
    assert {"phantom_default.toml", "fets2022_natural.toml", "brats2023_dirichlet.toml",
            "ixi_hospitals.toml", "msd_missing_modalities.toml"} <= names


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_every_scenario_file_validates(path: Path) -> None:
    scenario = build_scenario(read_scenario_file(path), source=str(path))
    sim = scenario.simulation
    if path.stem != "phantom_default":
        assert sim.layout is not None and sim.partition is not None
        assert sim.data_root is None  # given with --data-root DIR
        assert set(scenario.run.data.modalities)


def test_a_partition_without_a_layout_is_refused() -> None:
    with pytest.raises(ConfigError, match="layout"):
        build_scenario({"simulation": {"partition": {"name": "natural"}}}, source="t")


def test_crops_too_small_for_the_nnunet_encoder_are_refused_before_data() -> None:
    with pytest.raises(ConfigError, match=r"crop_size = 32 is too small for the nnunet-resenc-m"):
        build_scenario({"model": {"preset": "nnunet-resenc-m"}, "data": {"crop_size": 32}},
                       source="options")


def test_an_unknown_layout_suggests_the_closest() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'fets2022'"):
        build_scenario({"simulation": {"layout": "fets2023"}}, source="t")


def test_an_unknown_partitioner_or_setting_is_refused() -> None:
    with pytest.raises(ConfigError, match="partition"):
        build_scenario({"simulation": {"layout": "auto", "partition": {"name": "random"}}}, source="t")
    with pytest.raises(ConfigError, match="alpa"):
        build_scenario({"simulation": {"layout": "auto", "partition": {"name": "dirichlet", "alpa": 1}}},
                       source="t")


def test_strategy_option_keeps_its_own_table_and_replaces_another_strategys() -> None:
    from simulations.simulate_cli import with_strategy

    raw = {"federation": {"num_rounds": 2, "strategy": {"name": "fedema", "fedema_tau": 0.5}}}
    same = build_scenario(with_strategy(raw, "fedema"), source="t").run.federation
    assert same.strategy.name == "fedema" and same.strategy.fedema_tau == 0.5 and same.num_rounds == 2
    other = build_scenario(with_strategy(raw, "fedprox"), source="t").run.federation
    assert other.strategy.name == "fedprox" and other.num_rounds == 2
    assert build_scenario(with_strategy({}, "fedadam"), source="t").run.federation.strategy.name == "fedadam"
    with pytest.raises(ConfigError, match="needs at least 3 sites"):
        build_scenario(with_strategy({}, "krum"), source="t")
