"""The multimodal 3D encoder: MONAI residual units, one single-channel modality per input."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from monai.networks.blocks import ResidualUnit
from torch import nn


@dataclass(frozen=True)
class EncoderPreset:
    """Widths and depth of the encoder; stage i halves the resolution (stride 2)."""

    channels: tuple[int, ...]
    num_res_units: int
    norm_groups: int

    #: GroupNorm normalizes over channels too, so any crop edge works.
    min_crop_size = 1

    def build(self, *, in_channels: int = 1) -> MultiModalEncoder:
        return MultiModalEncoder(channels=self.channels, num_res_units=self.num_res_units,
                                 norm_groups=self.norm_groups, in_channels=in_channels)


#: "cpu-small" downsamples in its first layer (PRODUCT.md: the first layers decide CPU
#: speed); "gpu-base" is the same shape, wider and deeper, for a site with a GPU.
RESIDUAL_UNIT_PRESETS: dict[str, EncoderPreset] = {
    "cpu-small": EncoderPreset(channels=(16, 32, 64, 128), num_res_units=1, norm_groups=8),
    "gpu-base": EncoderPreset(channels=(32, 64, 128, 256, 320), num_res_units=2, norm_groups=16),
}


class MultiModalEncoder(nn.Module):
    """A stack of strided MONAI ``ResidualUnit`` stages, the down path of MONAI's UNet.

    Every modality enters as its own single-channel volume (as in BrainMVP, docs/methods.md),
    so one set of weights serves any subset of modalities and missing modalities cost
    nothing. The per-stage feature maps are kept for U-Net-style decoders in fine-tuning.

    Args:
        channels: output channels per stage; each stage has stride 2.
        in_channels: 1 for pretraining (one modality per volume); downstream models may
            stack M modalities as channels (see ``shared/model/inflate.py``).
        num_res_units: convolution sub-units per residual stage.
        norm_groups: GroupNorm groups (GroupNorm does not depend on the batch size, which is
            small on a site; its affine parameters are what stays site-local, FedBN-style).
    """

    def __init__(
        self, *, channels: tuple[int, ...], num_res_units: int, norm_groups: int, in_channels: int = 1
    ) -> None:
        super().__init__()
        if not channels:
            raise ValueError("channels must list at least one stage width, got ()")
        bad = [c for c in channels if c % norm_groups]
        if bad:
            raise ValueError(
                f"every stage width must be divisible by norm_groups={norm_groups}, got {bad}"
            )
        self.channels = tuple(channels)
        self.in_channels = in_channels
        self.norm_groups = norm_groups
        self.num_res_units = num_res_units
        #: Runs before stage 0 (parameter-free here; a convolution in nnU-Net's encoder).
        self.stem: nn.Module = self.build_stem()
        self.stages = nn.ModuleList(self.build_stages())

    #: Stride of stage 0: 2 here (downsample early, PRODUCT.md); 1 in nnU-Net's encoder.
    first_stride = 2

    def build_stem(self) -> nn.Module:
        """What runs before stage 0; an identity (no parameters) for this encoder."""
        return nn.Identity()

    def build_stages(self) -> list[nn.Module]:
        """One strided MONAI ``ResidualUnit`` per entry of ``channels``."""
        stages: list[nn.Module] = []
        in_ch = self.in_channels
        for out_ch in self.channels:
            stages.append(
                ResidualUnit(
                    spatial_dims=3,
                    in_channels=in_ch,
                    out_channels=out_ch,
                    strides=2,
                    subunits=self.num_res_units,
                    act="PRELU",
                    norm=("GROUP", {"num_groups": self.norm_groups}),
                )
            )
            in_ch = out_ch
        return stages

    @property
    def out_dim(self) -> int:
        """Width of the pooled embedding returned by ``forward``."""
        return self.channels[-1]

    @property
    def min_input_size(self) -> int:
        """Smallest spatial edge that survives every strided stage (input edges should be
        multiples of it)."""
        return int(self.first_stride * 2 ** (len(self.channels) - 1))

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(N, in_channels, D, H, W)`` -> one feature map per stage, finest first."""
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected a (N, {self.in_channels}, D, H, W) batch, got {tuple(x.shape)}"
            )
        feats = []
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 1, D, H, W)`` -> global-average-pooled embedding ``(N, out_dim)``."""
        return self.forward_features(x)[-1].mean(dim=(2, 3, 4))
