"""The nnU-Net checkpoint loads with nnU-Net's own code into the network nnU-Net builds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from server.export import export_run
from server.export.nnunet import CONFIGURATION, PLANS_FILE, STEM_WEIGHT
from shared.model import load_pretrained_encoder
from tests.server.export.conftest import write_run

plans_net = pytest.importorskip("nnunetv2.utilities.get_network_from_plans")
pretrained = pytest.importorskip("nnunetv2.run.load_pretrained_weights")


@pytest.fixture(scope="module")
def nnunet_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_run(tmp_path_factory.mktemp("run"), preset="nnunet-resenc-cpu")


def test_nnunets_loader_takes_the_exported_encoder(nnunet_run: Path, tmp_path: Path) -> None:
    checkpoint = export_run(nnunet_run, fmt="nnunet", out=tmp_path)
    plans = json.loads((tmp_path / PLANS_FILE).read_text())
    arch = plans["configurations"][CONFIGURATION]["architecture"]
    # What nnUNetTrainer.build_network_architecture does with the plan's configuration ...
    net = plans_net.get_network_from_plans(
        arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
        input_channels=4, output_channels=3, allow_init=True, deep_supervision=True)
    # ... and what `nnUNetv2_train ... -pretrained_weights FILE` then calls.
    pretrained.load_pretrained_weights(net, str(checkpoint))
    want = load_pretrained_encoder(nnunet_run / "encoder.safetensors").state_dict()
    got = net.encoder.state_dict()
    for key, value in want.items():
        if key == STEM_WEIGHT:  # one modality -> 4 stacked channels
            torch.testing.assert_close(got[key], value.repeat(1, 4, 1, 1, 1) / 4)
        else:
            torch.testing.assert_close(got[key], value)
    torch.testing.assert_close(net.decoder.encoder.stages[2].blocks[0].conv1.conv.weight,
                               want["stages.2.blocks.0.conv1.conv.weight"])
    with torch.no_grad():
        out = net.eval()(torch.rand(1, 4, 32, 32, 32))
    assert out[0].shape == (1, 3, 32, 32, 32)  # deep supervision: full resolution first


def test_a_monai_preset_run_is_refused_with_the_fix(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"nnU-Net encoder preset.*got 'cpu-small'.*"
                                         r"preset = \"nnunet-resenc-m\""):
        export_run(run_dir, fmt="nnunet", out=tmp_path)
