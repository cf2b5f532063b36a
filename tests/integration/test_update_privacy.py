"""Update DP in a real Flower simulation: sites clip, the server adds noise, rounds are accounted,
and the budget stops the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from flwr.supercore.privacy_accounting import (
    GaussianPrivacyEvent,
    NeighboringRelation,
    PrivacyConfig,
    SamplingMethod,
)
from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant
from safetensors.torch import load_file

from tests.integration.test_simulate import simulate, tiny_scenario

pytestmark = pytest.mark.integration


def epsilon_after(rounds: int, *, noise: float, sites: int, delta: float) -> float:
    accountant = RdpAccountant(PrivacyConfig(
        target_delta=delta, population_size=sites,
        neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
        sampling_method=SamplingMethod.NO_AMPLIFICATION))
    accountant.compose(GaussianPrivacyEvent(noise_multiplier=noise, sample_size=sites, population_size=sites),
                       rounds)
    return accountant.get_privacy_spent().epsilon


def test_update_dp_is_accounted_per_round_and_stops_at_the_budget(tmp_path: Path) -> None:
    noise, delta = 2.0, 1e-3
    # A budget between what two and three rounds cost: the third round must not run.
    budget = (epsilon_after(2, noise=noise, sites=2, delta=delta)
              + epsilon_after(3, noise=noise, sites=2, delta=delta)) / 2
    scenario = tmp_path / "dp.toml"
    scenario.write_text(tiny_scenario(num_rounds=3, extra=f"""
[privacy.updates]
enabled = true
clipping = "client"
clipping_norm = 0.5
noise_multiplier = {noise}
target_delta = {delta}
max_epsilon = {budget}
"""))
    out = tmp_path / "run"
    proc = simulate("--config", str(scenario), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rounds = json.loads((out / "metrics.json").read_text())["rounds"]
    assert [r["round"] for r in rounds] == [1, 2]
    spent = [r["train"]["update_privacy"]["epsilon"] for r in rounds]
    assert spent == pytest.approx([epsilon_after(k, noise=noise, sites=2, delta=delta) for k in (1, 2)])
    assert all(r["train"]["update_privacy"]["sites"] == 2 for r in rounds)
    card = json.loads((out / "model_card.json").read_text())
    assert card["update_privacy"]["epsilon"] == pytest.approx(spent[-1])
    assert card["update_privacy"]["rounds"] == 2
    assert "max_epsilon" in card["stopped_early"]
    report = (out / "report.html").read_text()
    assert "update DP" in report and f"{spent[-1]:.3f}" in report
    assert all(torch.isfinite(t).all() for t in load_file(out / "encoder.safetensors").values())
    site_log = (out / "flower.log").read_text(errors="replace")
    assert "fixedclipping_mod: parameters are clipped" in site_log  # the sites clipped their updates
