"""fedmm's nnU-Net encoder presets are nnU-Net's ResidualEncoder, and every pretext task trains them."""

from __future__ import annotations

import pydoc
import typing

import pytest
import torch

from shared.config import ModelConfig, RunConfig
from shared.model import (
    NNUNET_PRESETS,
    PRESETS,
    NnUNetResidualEncoder,
    build_encoder,
    build_segmenter,
)
from shared.model.site_local import global_parameter_names
from shared.pretext import TaskContext, available_pretexts, build_pretext
from tests.shared.test_pretext_registry import MODS, make_batch, pool

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
    encoder = build_encoder("nnunet-resenc-cpu")
    assert encoder.min_input_size == 16
    assert encoder(torch.rand(2, 1, 1, 32, 32)).shape == (2, 128)  # a plane, as plane_intersection
    assert encoder(torch.rand(1, 1, 24, 24, 24)).shape == (1, 128)  # 24 -> 3 -> 2: ceil pooling


def test_instance_norm_is_site_local() -> None:
    names = global_parameter_names(build_encoder("nnunet-resenc-cpu"), site_local_norm=True)
    assert names and not any(".norm." in n for n in names)


def test_segmenter_returns_the_input_resolution() -> None:
    net = build_segmenter(None, in_channels=4, out_channels=3, preset="nnunet-resenc-cpu")
    assert net(torch.rand(1, 4, 16, 32, 16)).shape == (1, 3, 16, 32, 16)


@pytest.mark.parametrize("name", available_pretexts())
def test_every_pretext_task_trains_the_nnunet_encoder(name: str) -> None:
    cfg = RunConfig.model_validate({"pretext": {"name": name}}).pretext[0]
    task = build_pretext(cfg, context=TaskContext(modalities=MODS, pool=pool(), server_round=99,
                                                  crop_size=32))
    torch.manual_seed(0)
    # nnU-Net's encoder class at test width (the presets only differ in widths and depth).
    encoder = NnUNetResidualEncoder(channels=(8, 16, 16, 16), blocks_per_stage=(1, 1, 1, 1))
    head = task.build_head(encoder)
    views = task.make_views(make_batch(0), torch.Generator().manual_seed(0))
    loss = task.loss(views, encoder=encoder, head=head)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in encoder.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
