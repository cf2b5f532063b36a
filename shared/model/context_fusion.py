"""SLeM's contextual fusion block (CFB): multi-scale context on a 3D feature map (docs/methods.md).

Wang, Lin, Qi, Chen, Li, Shen, Ma, Journal of Computer-Aided Design & Computer Graphics
37(3):474-483, 2025, place a CFB after the encoder so that tumours of different sizes
are captured. Its inner structure is our reconstruction, ASPP-like (Chen et al.,
DeepLab v3): parallel dilated 3x3x3 convolutions plus an image-level (global pooling)
branch, concatenated, fused by a 1x1x1 convolution and added back to the input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from torch import nn

#: ASPP's rates, scaled down for the coarse deepest map of a 3D encoder.
DEFAULT_DILATIONS: tuple[int, ...] = (1, 2, 4)


def validate_dilations(dilations: Sequence[int]) -> tuple[int, ...]:
    """Dilations as a tuple; raises ``ValueError`` for an empty, repeated or non-positive list."""
    rates = tuple(int(d) for d in dilations)
    if not rates or any(d < 1 for d in rates) or len(set(rates)) != len(rates):
        raise ValueError(f"Expected distinct positive dilations such as {DEFAULT_DILATIONS}, "
                         f"got {tuple(dilations)}")
    return rates


class ContextFusionBlock(nn.Module):
    """``(N, C, D, H, W) -> (N, C, D, H, W)``: ``x + fuse(cat(branches(x)))``.

    Branches: one 3x3x3 convolution per dilation (GroupNorm + PReLU, padding keeps the
    size) and, if ``global_pool``, a global-average-pooled 1x1x1 convolution broadcast
    back over the map. The 1x1x1 fusion convolution starts at zero (``zero_init``), so the
    block is the identity at initialisation and a pretrained encoder's features reach the
    decoder unchanged until fine-tuning gives the context branches a say.

    Note that a dilation larger than the map's edge only reads zero padding off-centre:
    the cpu-small encoder's deepest map is 3^3 for a 48^3 crop.

    Args:
        channels: C, the input and output channels.
        dilations: one dilated branch per entry (distinct, >= 1).
        branch_channels: channels of each branch (default: C).
        norm_groups: GroupNorm groups of the convolutional branches; must divide
            ``branch_channels``.
        global_pool: add the image-level branch.
        zero_init: start the fusion convolution at zero (identity block).
    """

    def __init__(
        self,
        channels: int,
        *,
        dilations: Sequence[int] = DEFAULT_DILATIONS,
        branch_channels: int | None = None,
        norm_groups: int = 8,
        global_pool: bool = True,
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        rates = validate_dilations(dilations)
        width = branch_channels or channels
        if channels < 1:
            raise ValueError(f"Expected channels >= 1, got {channels}")
        if norm_groups < 1 or width % norm_groups:
            raise ValueError(f"branch_channels ({width}) must be divisible by norm_groups "
                             f"({norm_groups})")
        norm = ("GROUP", {"num_groups": norm_groups})
        self.branches = nn.ModuleList(
            Convolution(3, channels, width, kernel_size=3, dilation=d, norm=norm, act="PRELU")
            for d in rates
        )
        # A 1x1x1 map has no spatial statistics for GroupNorm to use: convolution + PReLU only.
        self.pooled = (
            nn.Sequential(nn.AdaptiveAvgPool3d(1),
                          Convolution(3, channels, width, kernel_size=1, norm=None, act="PRELU"))
            if global_pool else None
        )
        n_branches = len(rates) + int(global_pool)
        self.fuse = Convolution(3, n_branches * width, channels, kernel_size=1, conv_only=True)
        if zero_init:
            for p in self.fuse.parameters():  # the 1x1x1 convolution's weight and bias
                nn.init.zeros_(p)
        self.channels = channels
        self.dilations = rates

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != self.channels:
            raise ValueError(f"expected a (N, {self.channels}, D, H, W) map, got {tuple(x.shape)}")
        outs = [branch(x) for branch in self.branches]
        if self.pooled is not None:
            outs.append(self.pooled(x).expand(-1, -1, *x.shape[2:]))
        return x + self.fuse(torch.cat(outs, dim=1))
