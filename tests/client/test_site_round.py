"""A site's round functions without Flower: training, evaluation, state (the statistics
release: tests/client/test_release.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from client.evaluate import evaluate_round
from client.site_state import SiteState
from client.train import train_round
from shared.config import RunConfig, SiteConfig
from shared.model import build_encoder, global_state
from tests.client.site_data import initial_arrays, round_config, six_study_site

CFG = round_config()


@pytest.fixture
def site(tmp_path: Path) -> SiteConfig:
    return six_study_site(tmp_path)


def test_train_round_returns_only_global_entries_and_keeps_state(site: SiteConfig) -> None:
    arrays = initial_arrays()
    result = train_round(cfg=CFG, site=site, global_arrays=arrays, pool=None, server_round=1)
    assert result.arrays.keys() == arrays.keys()
    assert any(not torch.equal(result.arrays[k], arrays[k]) for k in arrays)
    assert result.metrics["num-examples"] > 0 and np.isfinite(result.metrics["train-loss"])
    state = SiteState.load(site.state_dir)
    assert state.rounds == [1] and "plane_intersection" in state.heads
    assert state.encoder_local and state.optimizer is not None


def test_site_state_survives_a_restart(site: SiteConfig) -> None:
    arrays = initial_arrays()
    train_round(cfg=CFG, site=site, global_arrays=arrays, pool=None, server_round=1)
    head_after_1 = SiteState.load(site.state_dir).heads["plane_intersection"]
    # a "restarted" site: a fresh process would read the same file
    train_round(cfg=CFG, site=site, global_arrays=arrays, pool=None, server_round=2)
    state = SiteState.load(site.state_dir)
    assert state.rounds == [1, 2]
    assert any(not torch.equal(head_after_1[k], state.heads["plane_intersection"][k])
               for k in head_after_1)


def test_evaluate_is_deterministic_and_changes_nothing(site: SiteConfig) -> None:
    arrays = initial_arrays()
    a = evaluate_round(cfg=CFG, site=site, global_arrays=arrays, pool=None)
    b = evaluate_round(cfg=CFG, site=site, global_arrays=arrays, pool=None)
    assert a.arrays == {} and a.metrics["eval-loss"] == b.metrics["eval-loss"]
    assert not (site.state_dir / "site_state.pt").exists()


def test_shared_templates_need_the_sites_consent(site: SiteConfig) -> None:
    from shared.pretext.shared_heads import initial_head_arrays

    key = "head.masked_modality_reconstruction.templates"
    cfg = CFG.model_copy(update={"pretext": RunConfig.model_validate({"pretext": {
        "name": "masked_modality_reconstruction", "template_size": 8,
        "share_templates": True}}).pretext})
    torch.manual_seed(0)
    encoder = build_encoder("cpu-small")
    arrays = {**global_state(encoder, site_local_norm=True), **initial_head_arrays(cfg, encoder)}
    with pytest.raises(PermissionError, match=r"site\.toml"):
        train_round(cfg=cfg, site=site, global_arrays=arrays, pool=None, server_round=1)
    consenting = site.model_copy(update={"share_templates": True})
    result = train_round(cfg=cfg, site=consenting, global_arrays=arrays, pool=None, server_round=1)
    assert result.arrays.keys() == arrays.keys()
    assert not torch.equal(result.arrays[key], arrays[key])  # the templates trained
    evaluate_round(cfg=cfg, site=consenting, global_arrays=result.arrays, pool=None)
