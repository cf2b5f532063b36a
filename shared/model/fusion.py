"""Feeds M stacked modalities to a single-modality pretrained encoder without losing contrast.

Stage 0 of the encoder runs on each modality separately, with its pretrained weights (as in
pretraining, one modality per volume); the M feature maps are fused into one by their mean
plus a zero-initialised 1x1x1 convolution over their concatenation. At initialisation the
network therefore sees features exactly as pretrained; the fusion learns which modality
matters where (enhancement is only visible on T1ce) as soon as gradients arrive. Stage 0
costs the same as one M-channel convolution, because its convolutions read the input
channels once either way.
"""

from __future__ import annotations

import torch
from torch import nn

from shared.model.encoder import MultiModalEncoder


class ModalityFusionEncoder(nn.Module):
    """``(N, M, D, H, W)`` -> per-stage feature maps, from a 1-channel encoder.

    Args:
        encoder: a single-channel ``MultiModalEncoder`` (pretrained or not).
        num_modalities: M, the number of stacked input modalities.
    """

    def __init__(self, encoder: MultiModalEncoder, *, num_modalities: int) -> None:
        super().__init__()
        if encoder.in_channels != 1:
            raise ValueError(f"expected a single-channel encoder, got in_channels={encoder.in_channels}")
        if num_modalities < 1:
            raise ValueError(f"num_modalities must be >= 1, got {num_modalities}")
        self.encoder = encoder
        self.num_modalities = num_modalities
        c0 = encoder.channels[0]
        self.fuse = nn.Conv3d(num_modalities * c0, c0, kernel_size=1, bias=False)
        with torch.no_grad():
            self.fuse.weight.zero_()
        self.channels = encoder.channels
        self.norm_groups = encoder.norm_groups
        self.num_res_units = encoder.num_res_units
        self.first_stride = encoder.first_stride
        self.out_dim = encoder.out_dim

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(N, M, D, H, W)`` -> one feature map per stage, finest first."""
        n, m = x.shape[:2]
        if x.ndim != 5 or m != self.num_modalities:
            raise ValueError(f"expected (N, {self.num_modalities}, D, H, W), got {tuple(x.shape)}")
        stages = self.encoder.stages
        f0 = stages[0](self.encoder.stem(x.reshape(n * m, 1, *x.shape[2:])))  # (N*M, C0, ...)
        f0 = f0.reshape(n, m * f0.shape[1], *f0.shape[2:])             # (N, M*C0, ...)
        y = f0.reshape(n, m, -1, *f0.shape[2:]).mean(1) + self.fuse(f0)
        feats = [y]
        for stage in stages[1:]:
            y = stage(y)
            feats.append(y)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, M, D, H, W)`` -> pooled embedding ``(N, out_dim)``."""
        return self.forward_features(x)[-1].mean(dim=(2, 3, 4))
