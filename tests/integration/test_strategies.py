"""Real federations through Flower's simulation engine with other strategies than FedAvg."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.integration.test_simulate import leftover_processes, simulate

pytestmark = pytest.mark.integration

# 2 sites x 2 rounds x 1 local step: FedEMA needs a second round to blend anything.
TINY = """
seed = 1
[simulation]
sites = 2
[simulation.phantom]
subjects_per_site = 4
spacing_mm = 4.0
[data]
spacing_mm = 4.0
crop_size = 16
batch_size = 2
eval_fraction = 0.25
[train]
local_steps = 1
eval_batches = 1
[federation]
num_rounds = 2
round_timeout_s = 300
connect_timeout_s = 120
[federation.strategy]
name = "{name}"
fedema_tau = 0.5
[privacy]
min_studies = 2
"""


# FedProx also checks that sites accept Flower's extra "proximal-mu" config entry; it is
# behind `slow` because each run costs a Ray start-up and its client side is unit-tested.
@pytest.fixture(scope="module", params=["fedema", "fedmedian",
                                        pytest.param("fedprox", marks=pytest.mark.slow)])
def strategy_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                 ) -> tuple[str, Path, subprocess.CompletedProcess[str]]:
    name = str(request.param)
    work = tmp_path_factory.mktemp(name)
    (work / "tiny.toml").write_text(TINY.format(name=name))
    out = work / "run"
    proc = simulate("--config", str(work / "tiny.toml"), "--out", str(out), cwd=work)
    return name, out, proc


def test_the_run_completes_and_the_card_names_the_strategy(strategy_run) -> None:
    name, out, proc = strategy_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    card = json.loads((out / "model_card.json").read_text())
    assert card["strategy"] == name and card["config"]["federation"]["strategy"]["name"] == name
    assert card["rounds"] == 2 and card["sites"] == 2 and (out / "encoder.safetensors").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert [r["round"] for r in metrics["rounds"]] == [1, 2]
    assert all(r["train"]["aggregated"] and len(r["train"]["sites"]) == 2 for r in metrics["rounds"])
    assert leftover_processes(out / ".flwr") == []


def test_fedema_sites_blend_from_their_second_round(strategy_run) -> None:
    name, out, proc = strategy_run
    if name != "fedema":
        pytest.skip("FedEMA only")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    first, second = json.loads((out / "metrics.json").read_text())["rounds"]
    assert [s["fedema-mu"] for s in first["train"]["sites"].values()] == [0.0, 0.0]
    # lambda is fixed in a site's first blended round, so there mu = tau
    assert [s["fedema-mu"] for s in second["train"]["sites"].values()] == pytest.approx([0.5, 0.5])


def test_other_strategies_send_no_fedema_metric(strategy_run) -> None:
    name, out, _ = strategy_run
    if name == "fedema":
        pytest.skip("not FedEMA")
    for rnd in json.loads((out / "metrics.json").read_text())["rounds"]:
        assert all("fedema-mu" not in s for s in rnd["train"]["sites"].values())
