"""A light U-Net decoder over the encoder's feature pyramid, for dense pretext targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from torch import nn

from shared.model.encoder import MultiModalEncoder


class PyramidDecoder(nn.Module):
    """Up-samples the deepest encoder map back to the input size with skip connections.

    For each finer stage: trilinear 2x up-sampling, concatenation with that stage's map,
    one 3x3x3 convolution (GroupNorm + PReLU); a last up-sampling to the input size and a
    1x1x1 convolution give ``out_channels`` maps. It stays on the site (a pretext head);
    fine-tuning builds its own decoder (shared/model/unet.py).

    Args:
        encoder: the encoder whose ``forward_features`` this decodes (its widths are read).
        out_channels: output maps (1 for an image reconstruction).
        width: channels of every decoder stage (kept small: it is thrown away after
            pretraining).
    """

    def __init__(self, encoder: MultiModalEncoder, *, out_channels: int = 1, width: int = 32) -> None:
        super().__init__()
        chans = encoder.channels
        groups = min(encoder.norm_groups, width)
        self.reduce = Convolution(3, chans[-1], width, kernel_size=1, act="PRELU",
                                  norm=("GROUP", {"num_groups": groups}))
        self.blocks = nn.ModuleList(
            Convolution(3, width + skip, width, kernel_size=3, act="PRELU",
                        norm=("GROUP", {"num_groups": groups}))
            for skip in reversed(chans[:-1])
        )
        self.out = Convolution(3, width, out_channels, kernel_size=1, conv_only=True)

    def forward(self, feats: list[torch.Tensor], size: tuple[int, ...]) -> torch.Tensor:
        """``feats`` finest first (as ``forward_features`` returns them) -> ``(N, out, *size)``."""
        y = self.reduce(feats[-1])
        for block, skip in zip(self.blocks, reversed(feats[:-1]), strict=True):
            y = F.interpolate(y, size=skip.shape[2:], mode="trilinear", align_corners=False)
            y = block(torch.cat([y, skip], dim=1))
        y = F.interpolate(y, size=size, mode="trilinear", align_corners=False)
        out: torch.Tensor = self.out(y)
        return out
