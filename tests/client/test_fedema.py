"""FedEMA's blending against a hand computation, its state on the site's disk, its round."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from client.fedema import compatible, encoder_divergence, fedema_blend
from client.site_state import STATE_FILE, SiteState
from client.train import train_round
from shared.config import RunConfig, SiteConfig
from shared.model import build_encoder, global_state
from tests.client.site_data import SPACING, write_site


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


# W_g - W_k = (3, 4) over two entries, so ||W_g - W_k|| = 5
W_G = {"encoder.a": t(3.0), "encoder.b": t(4.0, 1.0)}
W_K = {"encoder.a": t(0.0), "encoder.b": t(0.0, 1.0)}


def test_first_round_takes_the_global_encoder() -> None:
    for previous in (None, {}):
        out = fedema_blend(W_G, previous, lam=None, tau=0.7)
        assert out.mu == 0.0 and out.lam is None and out.divergence == 0.0
        assert all(torch.equal(out.arrays[k], W_G[k]) for k in W_G)


def test_divergence_is_one_norm_over_all_entries() -> None:
    assert encoder_divergence(W_G, W_K) == pytest.approx(5.0)


def test_first_blended_round_fixes_lambda_and_mu_is_tau() -> None:
    out = fedema_blend(W_G, W_K, lam=None, tau=0.7)
    assert out.divergence == pytest.approx(5.0)
    assert out.lam == pytest.approx(0.7 / 5.0)   # lambda = tau / ||W_g - W_k||
    assert out.mu == pytest.approx(0.7)          # mu = min(lambda * 5, 1)
    # W_k <- 0.7 W_k + 0.3 W_g
    torch.testing.assert_close(out.arrays["encoder.a"], t(0.3 * 3.0))
    torch.testing.assert_close(out.arrays["encoder.b"], t(0.3 * 4.0, 1.0))


def test_later_rounds_keep_lambda_and_scale_mu_with_the_divergence() -> None:
    lam = 0.7 / 5.0
    w_g = {"encoder.a": t(1.2), "encoder.b": t(1.6, 1.0)}   # ||W_g - W_k|| = 2
    out = fedema_blend(w_g, W_K, lam=lam, tau=0.7)
    assert out.lam == lam and out.mu == pytest.approx(lam * 2.0)
    mu = lam * 2.0
    torch.testing.assert_close(out.arrays["encoder.a"], t((1 - mu) * 1.2))
    torch.testing.assert_close(out.arrays["encoder.b"], t((1 - mu) * 1.6, 1.0))


def test_mu_is_clipped_at_one() -> None:
    w_g = {"encoder.a": t(30.0), "encoder.b": t(40.0, 1.0)}  # ||.|| = 50, lambda * 50 = 7
    out = fedema_blend(w_g, W_K, lam=0.7 / 5.0, tau=0.7)
    assert out.mu == 1.0
    assert all(torch.equal(out.arrays[k], W_K[k]) for k in W_K)  # the site keeps its own


def test_identical_weights_leave_lambda_unfixed() -> None:
    out = fedema_blend(W_G, {k: v.clone() for k, v in W_G.items()}, lam=None, tau=0.7)
    assert out.mu == 0.0 and out.lam is None
    assert all(torch.equal(out.arrays[k], W_G[k]) for k in W_G)


def test_integer_entries_come_from_the_global_encoder_and_do_not_count() -> None:
    w_g = {**W_G, "encoder.count": torch.tensor(7)}
    w_k = {**W_K, "encoder.count": torch.tensor(1000)}
    out = fedema_blend(w_g, w_k, lam=None, tau=0.5)
    assert out.divergence == pytest.approx(5.0) and int(out.arrays["encoder.count"]) == 7


def test_mismatched_previous_encoder_and_bad_tau_are_refused() -> None:
    other = {"encoder.a": t(0.0), "encoder.b": t(0.0, 0.0, 0.0)}
    assert not compatible(other, W_G) and compatible(W_K, W_G)
    with pytest.raises(ValueError, match="does not match"):
        fedema_blend(W_G, other, lam=None, tau=0.7)
    with pytest.raises(ValueError, match="tau must be > 0"):
        fedema_blend(W_G, W_K, lam=None, tau=0.0)


def test_state_round_trips_and_old_state_files_still_load(tmp_path: Path) -> None:
    state = SiteState(fedema_encoder={k: v.clone() for k, v in W_K.items()}, fedema_lambda=0.14,
                      fedema_round=3)
    state.save(tmp_path)
    back = SiteState.load(tmp_path)
    assert back.fedema_lambda == pytest.approx(0.14) and back.fedema_round == 3
    assert all(torch.equal(back.fedema_encoder[k], W_K[k]) for k in W_K)
    # a file written before FedEMA existed
    old = {"heads": {}, "encoder_local": {}, "optimizer": None, "optimizer_signature": "",
           "rounds": [1, 2]}
    torch.save(old, tmp_path / STATE_FILE)
    legacy = SiteState.load(tmp_path)
    assert legacy.rounds == [1, 2] and legacy.fedema_encoder == {}
    assert legacy.fedema_lambda is None and legacy.fedema_round == 0


def test_a_site_blends_from_its_second_fedema_round(tmp_path: Path) -> None:
    write_site(tmp_path / "data", num_studies=6)
    site = SiteConfig(data_dir=tmp_path / "data", state_dir=tmp_path / "state")
    cfg = RunConfig.model_validate({
        "model": {"preset": "cpu-small"},
        "data": {"crop_size": 16, "spacing_mm": SPACING, "batch_size": 2, "hist_bins": 8},
        "train": {"local_steps": 1, "eval_batches": 1},
        "privacy": {"min_studies": 3},
        "federation": {"strategy": {"name": "fedema", "fedema_tau": 0.6}},
    })
    torch.manual_seed(0)
    w_g = global_state(build_encoder("cpu-small"), site_local_norm=True)

    first = train_round(cfg=cfg, site=site, global_arrays=w_g, pool=None, server_round=1)
    assert first.metrics["fedema-mu"] == 0.0
    state = SiteState.load(site.state_dir)
    assert state.fedema_round == 1 and state.fedema_lambda is None
    assert all(torch.equal(state.fedema_encoder[k], first.arrays[k]) for k in w_g)

    # round 2 sends the same global encoder: the site blends its round-1 encoder in
    w_k = state.fedema_encoder
    second = train_round(cfg=cfg, site=site, global_arrays=w_g, pool=None, server_round=2)
    assert second.metrics["fedema-mu"] == pytest.approx(0.6)  # mu = tau when lambda is fixed
    state = SiteState.load(site.state_dir)
    divergence = encoder_divergence(w_g, w_k)
    assert state.fedema_round == 2 and state.fedema_lambda == pytest.approx(0.6 / divergence)

    # a replayed or new run (round not after the saved one) starts afresh from W_g
    third = train_round(cfg=cfg, site=site, global_arrays=w_g, pool=None, server_round=1)
    assert third.metrics["fedema-mu"] == 0.0
