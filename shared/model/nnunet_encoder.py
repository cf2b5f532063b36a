"""nnU-Net's residual encoder (ResEnc) as a fedmm encoder, so its pretrained weights load in nnU-Net.

The modules and parameter names are those of ``ResidualEncoder`` in
``dynamic_network_architectures`` (the network code nnU-Net v2 builds from its plans),
with nnU-Net's plan settings: 3x3x3 convolutions with bias, InstanceNorm (affine), LeakyReLU,
ResNet-D basic blocks (Isensee et al., "nnU-Net Revisited", MICCAI 2024), a stride-1 stem and
stage 0, stride 2 afterwards. Written here with plain torch so that a site needs no extra
package; ``tests/shared/test_nnunet_encoder.py`` checks names, shapes and outputs against
``dynamic_network_architectures`` itself. Two deliberate differences, neither with parameters:
the conv/norm pairs are not registered a second time under ``all_modules`` (safetensors
refuses tensors shared between names), and the skip's average pooling rounds up
(``SkipPool``), so odd edges (a 48-voxel crop, a single-slice plane) work; on the edges
nnU-Net uses (multiples of the total stride) both give identical outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from shared.model.encoder import MultiModalEncoder

#: Groups of the GroupNorm in heads and decoders fedmm builds on this encoder; the
#: encoder itself uses InstanceNorm as nnU-Net does.
HEAD_NORM_GROUPS = 8


class ConvNormAct(nn.Module):
    """Convolution, InstanceNorm, optional LeakyReLU (nnU-Net's ``ConvDropoutNormReLU``)."""

    def __init__(self, in_ch: int, out_ch: int, *, kernel: int, stride: int, bias: bool,
                 act: bool) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_ch, out_ch, kernel, stride=stride, padding=(kernel - 1) // 2,
                              bias=bias)
        self.norm = nn.InstanceNorm3d(out_ch, eps=1e-5, affine=True)
        self.nonlin = nn.LeakyReLU(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.nonlin(self.norm(self.conv(x)))
        return out


class SkipPool(nn.Module):
    """The skip's ``stride`` x ``stride`` average pooling, rounding up at odd edges.

    On even edges this is nnU-Net's ``AvgPool3d(stride, stride)``; an edge smaller than the
    window (a single-slice plane) is pooled with a window clipped to it, so the skip stays
    the shape of the strided convolution's output (ceil(edge / stride)).
    """

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = [min(self.stride, int(edge)) for edge in x.shape[2:]]
        return F.avg_pool3d(x, kernel, self.stride, ceil_mode=True)


class BasicBlockD(nn.Module):
    """ResNet-D basic block: two convolutions; the skip pools (if strided), then projects."""

    def __init__(self, in_ch: int, out_ch: int, *, stride: int) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(in_ch, out_ch, kernel=3, stride=stride, bias=True, act=True)
        self.conv2 = ConvNormAct(out_ch, out_ch, kernel=3, stride=1, bias=True, act=False)
        self.nonlin2 = nn.LeakyReLU(inplace=True)
        skip: list[nn.Module] = []
        if stride != 1:
            skip.append(SkipPool(stride))
        if in_ch != out_ch:
            skip.append(ConvNormAct(in_ch, out_ch, kernel=1, stride=1, bias=False, act=False))
        self.skip: nn.Module = nn.Sequential(*skip) if skip else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.nonlin2(self.conv2(self.conv1(x)) + self.skip(x))
        return out


class StackedResidualBlocks(nn.Module):
    """``n`` basic blocks; only the first one strides (nnU-Net's ``StackedResidualBlocks``)."""

    def __init__(self, n: int, in_ch: int, out_ch: int, *, stride: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            BasicBlockD(in_ch, out_ch, stride=stride),
            *(BasicBlockD(out_ch, out_ch, stride=1) for _ in range(n - 1)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.blocks(x)
        return out


class StackedConvBlocks(nn.Module):
    """The stem: one convolution block at full resolution (key ``stem.convs.0``)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(ConvNormAct(in_ch, out_ch, kernel=3, stride=1, bias=True,
                                               act=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.convs(x)
        return out


class NnUNetResidualEncoder(MultiModalEncoder):
    """nnU-Net's ResEnc with fedmm's encoder interface: ``forward_features``, ``forward``.

    Args:
        channels: features per stage (nnU-Net's ``features_per_stage``).
        blocks_per_stage: residual blocks per stage (``n_blocks_per_stage``).
        in_channels: 1 in pretraining (one modality per volume).
    """

    first_stride = 1

    def __init__(self, *, channels: tuple[int, ...], blocks_per_stage: tuple[int, ...],
                 in_channels: int = 1) -> None:
        if len(blocks_per_stage) != len(channels):
            raise ValueError(f"expected one blocks_per_stage entry per stage ({len(channels)}), "
                             f"got {list(blocks_per_stage)}")
        self.blocks_per_stage = tuple(blocks_per_stage)
        super().__init__(channels=channels, num_res_units=1, norm_groups=HEAD_NORM_GROUPS,
                         in_channels=in_channels)
        self.apply(_init_like_nnunet)

    def build_stem(self) -> nn.Module:
        return StackedConvBlocks(self.in_channels, self.channels[0])

    def build_stages(self) -> list[nn.Module]:
        stages: list[nn.Module] = []
        in_ch = self.channels[0]
        for i, (out_ch, n) in enumerate(zip(self.channels, self.blocks_per_stage, strict=True)):
            stages.append(StackedResidualBlocks(n, in_ch, out_ch, stride=1 if i == 0 else 2))
            in_ch = out_ch
        return stages


def _init_like_nnunet(module: nn.Module) -> None:
    """nnU-Net's ``InitWeights_He(1e-2)`` for every convolution.

    Not nnU-Net's ``init_last_bn_before_add_to_0``: normalization parameters stay on the
    sites (``site_local_norm``), so the exported encoder carries their initial values, and
    a zero scale there would switch off every residual branch of the export.
    """
    if isinstance(module, nn.Conv3d):
        nn.init.kaiming_normal_(module.weight, a=1e-2)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


@dataclass(frozen=True)
class NnUNetPreset:
    """A ResEnc shape; ``arch_kwargs`` is the matching ``architecture`` entry of an nnU-Net plan."""

    channels: tuple[int, ...]
    blocks_per_stage: tuple[int, ...]

    @property
    def min_crop_size(self) -> int:
        """Smallest crop edge leaving 2 voxels per edge at the deepest stage (InstanceNorm
        needs more than one)."""
        return int(2 ** len(self.channels))

    def build(self, *, in_channels: int = 1) -> NnUNetResidualEncoder:
        return NnUNetResidualEncoder(channels=self.channels, blocks_per_stage=self.blocks_per_stage,
                                     in_channels=in_channels)

    def arch_kwargs(self) -> dict[str, Any]:
        """``arch_kwargs`` of nnU-Net's ``ResidualEncoderUNet`` for this encoder (3D)."""
        n = len(self.channels)
        return {
            "n_stages": n,
            "features_per_stage": list(self.channels),
            "conv_op": "torch.nn.modules.conv.Conv3d",
            "kernel_sizes": [[3, 3, 3]] * n,
            "strides": [[1, 1, 1]] + [[2, 2, 2]] * (n - 1),
            "n_blocks_per_stage": list(self.blocks_per_stage),
            "n_conv_per_stage_decoder": [1] * (n - 1),
            "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True},
            "dropout_op": None,
            "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        }


#: ``nnunet-resenc-m``: nnU-Net's ResEnc M plan for a 128^3 patch (6 stages, 32..320
#: features, 1-3-4-6-6-6 blocks), for a site with a GPU. ``nnunet-resenc-cpu``: the same
#: design, narrower and shallower (16..128, 5 stages), for CPU sites and tests.
NNUNET_PRESETS: dict[str, NnUNetPreset] = {
    "nnunet-resenc-m": NnUNetPreset(channels=(32, 64, 128, 256, 320, 320),
                                    blocks_per_stage=(1, 3, 4, 6, 6, 6)),
    "nnunet-resenc-cpu": NnUNetPreset(channels=(16, 32, 64, 128, 128),
                                      blocks_per_stage=(1, 1, 2, 2, 2)),
}
