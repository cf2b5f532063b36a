"""`simulate --ray-address`: the sites run on an existing Ray cluster through Flower's Ray backend."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from shared.config import ConfigError
from simulations.scenario import SimulationConfig, build_scenario
from simulations.simulate import federation_config, finalize_run_config, preprocessed_dir
from tests.simulations.ray_cluster import local_ray_cluster


@pytest.mark.parametrize("address", ["10.0.0.5:6379", "auto", "ray://head.example.org:10001"])
def test_addresses_of_a_ray_head_are_accepted(address: str) -> None:
    assert SimulationConfig(ray_address=address).ray_address == address


@pytest.mark.parametrize("address", ["10.0.0.5", "head:port", ":6379"])
def test_an_address_without_host_and_port_is_refused(address: str) -> None:
    with pytest.raises(ConfigError, match=r"expected HOST:PORT of the Ray head .* got"):
        build_scenario({"simulation": {"ray_address": address}}, source="t")


def test_on_a_cluster_ray_gets_no_cpu_count() -> None:
    """Ray refuses num_cpus when it joins a cluster; the sites' own resources still go."""
    local = federation_config(4, SimulationConfig())
    assert "init-args-num-cpus=" in local
    remote = federation_config(4, SimulationConfig(ray_address="127.0.0.1:6379", client_cpus=2))
    assert "init-args-num-cpus" not in remote
    assert "num-supernodes=4" in remote and "client-resources-num-cpus=2" in remote


def test_on_a_cluster_each_site_keeps_its_preprocessed_studies_in_its_own_state(tmp_path: Path) -> None:
    """This machine's cache path may not exist on the cluster's other nodes."""
    def sites(raw: dict) -> Any:
        cfg = finalize_run_config(build_scenario(raw, source="t"), out_dir=tmp_path / "run",
                                  data_root=tmp_path, sites=["a", "b"], resume=False)
        return cfg.sites

    here = sites({})
    assert here.samples_dir == preprocessed_dir() and here.samples_dir.is_absolute()
    assert sites({"simulation": {"ray_address": "127.0.0.1:6379"}}).samples_dir is None


@pytest.mark.slow
@pytest.mark.integration
def test_simulate_runs_on_an_existing_local_ray_cluster(tmp_path: Path) -> None:
    from tests.integration.test_simulate import leftover_processes, simulate, tiny_scenario

    scenario = tmp_path / "tiny.toml"
    scenario.write_text(tiny_scenario())
    out = tmp_path / "run"
    with local_ray_cluster() as (address, ray_temp):
        proc = simulate("--config", str(scenario), "--out", str(out), "--ray-address", address,
                        cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        # The sites' actors ran as workers of this cluster (their logs are in its folder).
        assert list(ray_temp.glob("session_*/logs/worker-*")), "no worker ran on the cluster"
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["rounds"][0]["train"]["sites"]) == 2
    assert leftover_processes(out / ".flwr") == []
    assert subprocess.run(["pgrep", "-f", str(ray_temp)], capture_output=True).stdout == b""
