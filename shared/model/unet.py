"""A U-Net for downstream segmentation around the fedmm encoder, built from MONAI blocks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution, ResidualUnit
from torch import nn

from shared.model.context_fusion import ContextFusionBlock
from shared.model.fusion import ModalityFusionEncoder


class EncoderUNet(nn.Module):
    """The pretrained encoder as the down path, a MONAI-style up path with skip connections.

    The up path mirrors MONAI's ``UNet``: a stride-2 transposed convolution per stage,
    concatenation with the encoder feature map of the same resolution, a residual unit.
    A final transposed convolution returns to the input resolution and a 1x1x1
    convolution gives the logits. An input edge that is not a multiple of
    :attr:`size_multiple` (16 for cpu-small, 32 for gpu-base) is zero-padded to one on both
    sides and the logits cropped back, so any crop size works; a multiple avoids the padding.

    Args:
        encoder: the (possibly pretrained) encoder behind a modality fusion stem.
        out_channels: output channels (e.g. 3 BraTS regions: TC, WT, ET).
        context_fusion: an optional block (SLeM's CFB, shared/model/context_fusion.py)
            applied to the deepest feature map before the up path; it is part of the
            downstream model, trained in fine-tuning (also by a linear probe).
    """

    def __init__(self, encoder: ModalityFusionEncoder, *, out_channels: int,
                 context_fusion: ContextFusionBlock | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.context_fusion = context_fusion
        ch = encoder.channels
        norm = ("GROUP", {"num_groups": encoder.norm_groups})
        self.ups = nn.ModuleList()
        self.fuse = nn.ModuleList()
        for deep, shallow in zip(reversed(ch[1:]), reversed(ch[:-1]), strict=True):
            self.ups.append(Convolution(3, deep, shallow, strides=2, is_transposed=True,
                                        norm=norm, act="PRELU"))
            self.fuse.append(ResidualUnit(3, 2 * shallow, shallow, strides=1,
                                          subunits=encoder.num_res_units, norm=norm, act="PRELU"))
        # Back to the input resolution: stage 0 of fedmm's own encoder has stride 2, that
        # of nnU-Net's (shared/model/nnunet_encoder.py) stride 1.
        self.top = Convolution(3, ch[0], ch[0], strides=encoder.first_stride,
                               is_transposed=encoder.first_stride > 1, norm=norm, act="PRELU")
        self.head = Convolution(3, ch[0], out_channels, kernel_size=1, conv_only=True)

    @property
    def size_multiple(self) -> int:
        """The down path divides each edge by this (stage 0's stride, then 2 per stage)."""
        return int(self.encoder.first_stride) * 2 ** (len(self.encoder.channels) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, M, D, H, W)`` -> logits ``(N, out_channels, D, H, W)``."""
        size = tuple(int(s) for s in x.shape[2:])
        extra = [(-s) % self.size_multiple for s in size]
        if any(extra):  # F.pad lists the last dimension first: (W lo, W hi, H lo, H hi, D lo, D hi)
            x = F.pad(x, [p for e in reversed(extra) for p in (e // 2, e - e // 2)])
        feats = self.encoder.forward_features(x)
        y = feats[-1] if self.context_fusion is None else self.context_fusion(feats[-1])
        for up, fuse, skip in zip(self.ups, self.fuse, reversed(feats[:-1]), strict=True):
            y = fuse(torch.cat([up(y), skip], dim=1))
        logits = self.head(self.top(y))
        if any(extra):
            d, h, w = (e // 2 for e in extra)
            logits = logits[..., d:d + size[0], h:h + size[1], w:w + size[2]]
        return logits


class EncoderClassifier(nn.Module):
    """Global-average-pooled encoder features and a linear layer: ``(N, C, D, H, W) -> (N, K)``.

    An optional ``context_fusion`` block (SLeM's CFB) runs on the deepest feature map
    before the pooling.
    """

    def __init__(self, encoder: ModalityFusionEncoder, *, num_classes: int, dropout: float = 0.2,
                 context_fusion: ContextFusionBlock | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.context_fusion = context_fusion
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(encoder.out_dim, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.context_fusion is None:
            return self.head(self.encoder(x))
        deepest = self.context_fusion(self.encoder.forward_features(x)[-1])
        return self.head(deepest.mean(dim=(2, 3, 4)))
