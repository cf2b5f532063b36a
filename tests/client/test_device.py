"""How a site's model sits on its device: channels-last weights and a compiled encoder, as
options that change neither the training result's format nor what leaves the site (the CUDA
side: tests/gpu/test_cuda_path.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from client.device import place_model, select_device
from client.site_state import SiteState
from client.train import train_round
from shared.config import SiteConfig, TrainConfig
from shared.model import build_encoder
from tests.client.site_data import initial_arrays, round_config, six_study_site


def conv_weights(module: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in module.modules() if isinstance(m, nn.Conv3d)]


def test_defaults_leave_the_model_as_built() -> None:
    train = TrainConfig()
    assert not train.channels_last and not train.compile
    encoder = place_model(build_encoder("cpu-small"), torch.device("cpu"), train)
    weights = conv_weights(encoder)
    assert weights and all(w.is_contiguous() for w in weights)
    assert encoder._compiled_call_impl is None


def test_channels_last_puts_every_conv3d_weight_channels_last() -> None:
    encoder = place_model(build_encoder("cpu-small"), torch.device("cpu"),
                          TrainConfig(channels_last=True))
    weights = conv_weights(encoder)
    assert weights and all(w.is_contiguous(memory_format=torch.channels_last_3d) for w in weights)
    # A kernel with one input channel (or 1x1x1) is in both layouts; the others have left
    # the default one.
    assert all(not w.is_contiguous() for w in weights if w.shape[1] > 1 and w.shape[2:] != (1, 1, 1))


def test_compile_compiles_the_module_in_place_and_keeps_its_state_keys() -> None:
    built = build_encoder("cpu-small")
    keys = list(built.state_dict())
    encoder = place_model(built, torch.device("cpu"), TrainConfig(compile=True))
    assert encoder is built and encoder._compiled_call_impl is not None
    assert list(encoder.state_dict()) == keys


def test_select_device_cpu_without_cuda_request() -> None:
    assert select_device(TrainConfig(device="cpu")).type == "cpu"


@pytest.fixture
def site(tmp_path: Path) -> SiteConfig:
    return six_study_site(tmp_path)


def test_a_channels_last_round_sends_and_keeps_contiguous_tensors(site: SiteConfig) -> None:
    arrays = initial_arrays()
    result = train_round(cfg=round_config(channels_last=True), site=site, global_arrays=arrays,
                         pool=None, server_round=1)
    assert result.arrays.keys() == arrays.keys()
    assert all(v.is_contiguous() for v in result.arrays.values())
    assert any(v.dim() == 5 for v in result.arrays.values())  # conv weights were among them
    assert np.isfinite(result.metrics["train-loss"])
    state = SiteState.load(site.state_dir)
    saved = [*state.encoder_local.values(), *(v for h in state.heads.values() for v in h.values())]
    assert saved and all(v.is_contiguous() for v in saved)
