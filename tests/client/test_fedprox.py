"""FedProx's proximal term against its formula, and its wiring into a site's round."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from client.fedprox import ProximalTerm, global_parameters, proximal_term
from client.site_state import STATE_FILE
from client.train import train_round
from shared.config import RunConfig, SiteConfig
from shared.model import build_encoder, global_parameter_names, global_state
from tests.client.site_data import SPACING, write_site


def reference(params: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor], mu: float) -> float:
    """``mu/2 * sum ||w - w_g||^2`` written out element by element."""
    total = 0.0
    for k, p in params.items():
        for w, g in zip(p.detach().flatten().tolist(), anchor[k].flatten().tolist(), strict=True):
            total += (w - g) ** 2
    return mu / 2 * total


def test_value_and_gradient_match_the_formula() -> None:
    gen = torch.Generator().manual_seed(0)
    anchor = {"encoder.w": torch.randn(3, 4, generator=gen), "encoder.b": torch.randn(4, generator=gen)}
    params = {k: (v + torch.randn(v.shape, generator=gen)).requires_grad_() for k, v in anchor.items()}
    mu = 0.3
    term = proximal_term(params, anchor, mu=mu)
    assert term.shape == () and term.item() == pytest.approx(reference(params, anchor, mu), rel=1e-6)
    term.backward()
    for k, p in params.items():  # d/dw = mu (w - w_g)
        assert p.grad is not None
        torch.testing.assert_close(p.grad, mu * (p.detach() - anchor[k]))


def test_zero_at_the_anchor_and_zero_mu() -> None:
    params = {"encoder.w": torch.ones(2, requires_grad=True)}
    assert proximal_term(params, {"encoder.w": torch.ones(2)}, mu=5.0).item() == 0.0
    assert proximal_term(params, {"encoder.w": torch.zeros(2)}, mu=0.0).item() == 0.0


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="mu must be >= 0"):
        proximal_term({}, {}, mu=-1.0)
    with pytest.raises(ValueError, match="differ in keys"):
        proximal_term({"encoder.a": torch.zeros(1)}, {"encoder.b": torch.zeros(1)}, mu=1.0)


def test_the_captured_anchor_does_not_move_with_the_weights() -> None:
    layer = nn.Linear(3, 2)
    term = ProximalTerm(dict(layer.named_parameters()), mu=2.0)
    start = {k: p.detach().clone() for k, p in layer.named_parameters()}
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    for _ in range(3):  # the task loss pushes the weights away from the anchor
        opt.zero_grad()
        (layer(torch.ones(1, 3)).sum() + term()).backward()
        opt.step()
    assert all(torch.equal(term.anchor[k], start[k]) for k in start)
    expected = reference(dict(layer.named_parameters()), start, 2.0)
    assert term().item() == pytest.approx(expected, rel=1e-5) and expected > 0


def test_global_parameters_are_the_aggregated_trainable_weights() -> None:
    encoder = build_encoder("cpu-small")
    params = global_parameters(encoder, site_local_norm=True)
    names = set(global_parameter_names(encoder, site_local_norm=True))
    assert params and set(params) <= names
    # everything aggregated that is a parameter is covered; buffers are not
    param_names = {f"encoder.{k}" for k, _ in encoder.named_parameters()}
    assert set(params) == names & param_names
    assert set(params) < set(global_parameters(encoder, site_local_norm=False))


CFG = {
    "model": {"preset": "cpu-small"},
    "data": {"crop_size": 16, "spacing_mm": SPACING, "batch_size": 2, "hist_bins": 8},
    "train": {"local_steps": 2, "eval_batches": 1},
    "privacy": {"min_studies": 3},
}


def test_a_fedprox_round_is_pulled_towards_the_global_encoder(tmp_path: Path) -> None:
    write_site(tmp_path / "data", num_studies=6)
    site = SiteConfig(data_dir=tmp_path / "data", state_dir=tmp_path / "state")
    torch.manual_seed(0)
    init = global_state(build_encoder("cpu-small"), site_local_norm=True)

    def distance(strategy: dict[str, object]) -> float:
        # the same state folder each time (so data and seeds are identical), state afresh
        (site.state_dir / STATE_FILE).unlink(missing_ok=True)
        cfg = RunConfig.model_validate({**CFG, "federation": {"strategy": strategy}})
        result = train_round(cfg=cfg, site=site, global_arrays=init, pool=None, server_round=1)
        assert "fedema-mu" not in result.metrics
        return sum(float(((result.arrays[k] - v) ** 2).sum()) for k, v in init.items()) ** 0.5

    free = distance({"name": "fedavg"})
    pulled = distance({"name": "fedprox", "proximal_mu": 1e4})
    assert 0 < pulled < free
