"""Opt-in shared head entries (BrainMVP templates): keys, values, consent."""

from __future__ import annotations

import pytest
import torch

from shared.config import RunConfig
from shared.model import build_encoder
from shared.pretext import PretextMixture, TaskContext
from shared.pretext.shared_heads import (
    head_arrays,
    initial_head_arrays,
    load_head_arrays,
    require_consent,
    shared_head_keys,
    split_arrays,
)

KEY = "head.masked_modality_reconstruction.templates"


def run_config(share: bool) -> RunConfig:
    return RunConfig.model_validate({
        "model": {"preset": "cpu-small"}, "data": {"crop_size": 16},
        "pretext": [{"name": "cross_modal_contrastive"},
                    {"name": "masked_modality_reconstruction", "template_size": 8,
                     "share_templates": share}]})


def heads_of(cfg: RunConfig) -> torch.nn.ModuleDict:
    context = TaskContext(modalities=cfg.data.modalities, crop_size=cfg.data.crop_size)
    return PretextMixture.build(cfg.pretext, context=context, encoder=build_encoder("cpu-small"),
                                seed=cfg.seed).heads


def test_nothing_is_shared_by_default() -> None:
    cfg = run_config(share=False)
    assert shared_head_keys(cfg) == {}
    assert initial_head_arrays(cfg, build_encoder("cpu-small")) == {}
    require_consent(cfg, site_allows=False)  # nothing asked, nothing to consent to


def test_shared_templates_are_keyed_and_start_as_every_site_builds_them() -> None:
    cfg = run_config(share=True)
    assert shared_head_keys(cfg) == {KEY: ("masked_modality_reconstruction", "templates")}
    init = initial_head_arrays(cfg, build_encoder("cpu-small"))
    assert set(init) == {KEY} and init[KEY].shape == (4, 1, 8, 8, 8)
    torch.testing.assert_close(init[KEY], head_arrays(cfg, heads_of(cfg))[KEY])


def test_received_templates_are_loaded_into_the_head() -> None:
    cfg = run_config(share=True)
    heads = heads_of(cfg)
    sent = torch.rand(4, 1, 8, 8, 8)
    load_head_arrays(cfg, heads, {KEY: sent})
    torch.testing.assert_close(heads["masked_modality_reconstruction"].templates.detach(), sent)
    with pytest.raises(ValueError, match="shape"):
        load_head_arrays(cfg, heads, {KEY: torch.rand(4, 1, 4, 4, 4)})
    with pytest.raises(ValueError, match="different configs"):
        load_head_arrays(cfg, heads, {})


def test_split_separates_encoder_and_head_entries() -> None:
    enc, head = split_arrays({"encoder.a": torch.zeros(1), KEY: torch.ones(1)})
    assert list(enc) == ["encoder.a"] and list(head) == [KEY]


def test_a_site_without_consent_refuses_with_the_fix() -> None:
    with pytest.raises(PermissionError, match=r"share_templates = true in site\.toml"):
        require_consent(run_config(share=True), site_allows=False)
    require_consent(run_config(share=True), site_allows=True)
