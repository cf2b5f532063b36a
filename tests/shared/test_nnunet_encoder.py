"""fedmm's nnU-Net encoder presets are nnU-Net's ResidualEncoder, and every pretext task trains them."""

from __future__ import annotations

import pydoc
import typing

import pytest
import torch

from shared.config import ConfigError, ModelConfig
from shared.model import (
    NNUNET_PRESETS,
    PRESETS,
    NnUNetResidualEncoder,
    build_encoder,
    build_segmenter,
    check_crop_size,
)
from shared.model.site_local import global_parameter_names
from shared.pretext import available_pretexts
from tests.shared.test_pretext_registry import build_task, check_loss_reaches_encoder

unet = pytest.importorskip("dynamic_network_architectures.architectures.unet")


def dna_network(preset: str) -> torch.nn.Module:
    kwargs = NNUNET_PRESETS[preset].arch_kwargs()
    for key in ("conv_op", "norm_op", "dropout_op", "nonlin"):
        kwargs[key] = pydoc.locate(kwargs[key]) if kwargs[key] else None
    net = unet.ResidualEncoderUNet(input_channels=1, num_classes=2, **kwargs)
    net.apply(net.initialize)
    return net


def test_config_choices_and_presets_agree() -> None:
    choices = set(typing.get_args(ModelConfig.model_fields["preset"].annotation)) - {"auto"}
    assert choices == set(PRESETS)


@pytest.mark.parametrize("preset", sorted(NNUNET_PRESETS))
def test_names_and_shapes_are_nnunets(preset: str) -> None:
    with torch.device("meta"):  # names and shapes only: no memory, no initialisation cost
        ours = {k: v.shape for k, v in build_encoder(preset).state_dict().items()}
        theirs = {k: v.shape for k, v in dna_network(preset).encoder.state_dict().items()
                  if ".all_modules." not in k}  # nnU-Net's second name for the same tensors
    assert ours == theirs


def test_outputs_equal_nnunets_encoder_with_the_same_weights() -> None:
    torch.manual_seed(0)
    ours = build_encoder("nnunet-resenc-cpu").eval()
    theirs = dna_network("nnunet-resenc-cpu").encoder.eval()
    theirs.load_state_dict(ours.state_dict(), strict=False)
    x = torch.rand(1, 1, 32, 16, 16)
    with torch.no_grad():
        for a, b in zip(ours.forward_features(x), theirs(x), strict=True):
            torch.testing.assert_close(a, b)


def test_odd_edges_and_single_slices_work() -> None:
    assert build_encoder("nnunet-resenc-cpu").min_input_size == 16
    encoder = NnUNetResidualEncoder(channels=(8, 16, 16, 16), blocks_per_stage=(1, 1, 1, 1))
    assert encoder(torch.rand(2, 1, 1, 16, 16)).shape == (2, 16)  # a plane, as plane_intersection
    assert encoder(torch.rand(1, 1, 12, 12, 12)).shape == (1, 16)  # 12 -> 3 -> 2: ceil pooling


def test_instance_norm_is_site_local() -> None:
    names = global_parameter_names(build_encoder("nnunet-resenc-cpu"), site_local_norm=True)
    assert names and not any(".norm." in n for n in names)


def test_segmenter_returns_the_input_resolution() -> None:
    net = build_segmenter(None, in_channels=4, out_channels=3, preset="nnunet-resenc-cpu")
    assert net(torch.rand(1, 4, 16, 32, 16)).shape == (1, 3, 16, 32, 16)


@pytest.mark.parametrize("name", available_pretexts())
def test_every_pretext_task_trains_the_nnunet_encoder(name: str) -> None:
    task = build_task(name)
    torch.manual_seed(0)
    # nnU-Net's encoder class at test width (the presets only differ in widths and depth).
    encoder = NnUNetResidualEncoder(channels=(8, 16, 16, 16), blocks_per_stage=(1, 1, 1, 1))
    check_loss_reaches_encoder(task, encoder, task.build_head(encoder))


def test_exported_norms_keep_every_residual_branch_on() -> None:
    # Site-local norms are exported at their initial values: those must not be nnU-Net's
    # zero "last norm before the add", or the export would ignore its residual branches.
    state = build_encoder("nnunet-resenc-cpu").state_dict()
    assert all(bool((v == 1).all()) for k, v in state.items() if k.endswith("norm.weight"))


def test_crops_too_small_for_instance_norm_fail_before_training() -> None:
    check_crop_size("nnunet-resenc-cpu", 32)
    check_crop_size("cpu-small", 8)
    with pytest.raises(ConfigError, match=r"crop_size = 16 is too small for the nnunet-resenc-m "
                                          r"encoder.*Expected crop_size >= 64"):
        check_crop_size("nnunet-resenc-m", 16)
