"""A U-Net for downstream segmentation around the fedmm encoder, built from MONAI blocks."""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution, ResidualUnit
from torch import nn

from shared.model.fusion import ModalityFusionEncoder


class EncoderUNet(nn.Module):
    """The pretrained encoder as the down path, a MONAI-style up path with skip connections.

    The up path mirrors MONAI's ``UNet``: a stride-2 transposed convolution per stage,
    concatenation with the encoder feature map of the same resolution, a residual unit.
    A final transposed convolution returns to the input resolution and a 1x1x1
    convolution gives the logits. Input edges must be multiples of ``2 ** stages``.

    Args:
        encoder: the (possibly pretrained) encoder behind a modality fusion stem.
        out_channels: output channels (e.g. 3 BraTS regions: TC, WT, ET).
    """

    def __init__(self, encoder: ModalityFusionEncoder, *, out_channels: int) -> None:
        super().__init__()
        self.encoder = encoder
        ch = encoder.channels
        norm = ("GROUP", {"num_groups": encoder.norm_groups})
        self.ups = nn.ModuleList()
        self.fuse = nn.ModuleList()
        for deep, shallow in zip(reversed(ch[1:]), reversed(ch[:-1]), strict=True):
            self.ups.append(Convolution(3, deep, shallow, strides=2, is_transposed=True,
                                        norm=norm, act="PRELU"))
            self.fuse.append(ResidualUnit(3, 2 * shallow, shallow, strides=1,
                                          subunits=encoder.num_res_units, norm=norm, act="PRELU"))
        self.top = Convolution(3, ch[0], ch[0], strides=2, is_transposed=True, norm=norm,
                               act="PRELU")
        self.head = Convolution(3, ch[0], out_channels, kernel_size=1, conv_only=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, M, D, H, W)`` -> logits ``(N, out_channels, D, H, W)``."""
        feats = self.encoder.forward_features(x)
        y = feats[-1]
        for up, fuse, skip in zip(self.ups, self.fuse, reversed(feats[:-1]), strict=True):
            y = fuse(torch.cat([up(y), skip], dim=1))
        return self.head(self.top(y))


class EncoderClassifier(nn.Module):
    """Global-average-pooled encoder features and a linear layer: ``(N, C, D, H, W) -> (N, K)``."""

    def __init__(self, encoder: ModalityFusionEncoder, *, num_classes: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(encoder.out_dim, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))
