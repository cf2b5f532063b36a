"""Real federations through Flower's simulation engine with other strategies than FedAvg."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.integration.test_simulate import leftover_processes, simulate, tiny_scenario

pytestmark = pytest.mark.integration


#: Sites per strategy: a median needs three to outvote one (federation.min_nodes >= 3).
SITES = {"fedema": 2, "fedmedian": 3, "fedprox": 2}


def scenario(name: str) -> str:
    """2 or 3 sites x 2 rounds x 1 local step: FedEMA needs a second round to blend anything.

    The fedmedian run also pretrains with BrainMVP's templates shared (an opt-in head entry
    that every strategy aggregates next to the encoder; simulated sites consent).
    """
    templates = """[[pretext]]
name = "masked_modality_reconstruction"
template_size = 8
share_templates = true
""" if name == "fedmedian" else ""
    tau = "fedema_tau = 0.5\n" if name == "fedema" else ""
    return tiny_scenario(local_steps=1, num_rounds=2, sites=SITES[name], extra=f"""[federation.strategy]
name = "{name}"
{tau}{templates}""")


# Each run costs a Ray start-up (about a minute of CPU on two cores), so these runs are
# behind `slow` (`make test-all`): every strategy's aggregation and the sites' FedEMA and
# FedProx steps are unit-tested (tests/server/test_strategy.py, tests/client/), and CI runs
# FedAvg through Flower in tests/integration/test_simulate.py and test_malicious_sites.py.
# FedProx also checks that sites accept Flower's extra "proximal-mu" config entry.
@pytest.fixture(scope="module", params=[pytest.param(name, marks=pytest.mark.slow)
                                        for name in ("fedema", "fedmedian", "fedprox")])
def strategy_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                 ) -> tuple[str, Path, subprocess.CompletedProcess[str]]:
    name = str(request.param)
    work = tmp_path_factory.mktemp(name)
    (work / "tiny.toml").write_text(scenario(name))
    out = work / "run"
    proc = simulate("--config", str(work / "tiny.toml"), "--out", str(out), cwd=work)
    return name, out, proc


def test_the_run_completes_and_the_card_names_the_strategy(strategy_run) -> None:
    name, out, proc = strategy_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    card = json.loads((out / "model_card.json").read_text())
    assert card["strategy"] == name and card["config"]["federation"]["strategy"]["name"] == name
    sites = SITES[name]
    assert card["rounds"] == 2 and card["sites"] == sites and (out / "encoder.safetensors").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert [r["round"] for r in metrics["rounds"]] == [1, 2]
    assert all(r["train"]["aggregated"] and len(r["train"]["sites"]) == sites and not r["train"]["failures"]
               for r in metrics["rounds"])
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


def test_shared_templates_are_aggregated_but_not_exported(strategy_run) -> None:
    name, out, proc = strategy_run
    if name != "fedmedian":
        pytest.skip("the fedmedian run shares templates")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    key = "head.masked_modality_reconstruction.templates"
    start = load_file(out / "checkpoints" / "round_0000.safetensors")
    end = load_file(out / "checkpoints" / "round_0002.safetensors")
    assert start[key].shape == (4, 1, 8, 8, 8) and not torch.equal(start[key], end[key])
    assert key not in load_file(out / "encoder.safetensors")
