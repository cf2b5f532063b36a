"""The multimodal 3D encoder: MONAI residual units, one single-channel modality per input."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from monai.networks.blocks import ResidualUnit
from torch import nn

from shared.config import ModelConfig
from shared.lookup import look_up


@dataclass(frozen=True)
class EncoderPreset:
    """Widths and depth of the encoder; stage i halves the resolution (stride 2)."""

    channels: tuple[int, ...]
    num_res_units: int
    norm_groups: int


#: "cpu-small" downsamples in its first layer (PRODUCT.md: the first layers decide CPU
#: speed); "gpu-base" is the same shape, wider and deeper, for a site with a GPU.
PRESETS: dict[str, EncoderPreset] = {
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
        stages = []
        in_ch = in_channels
        for out_ch in channels:
            stages.append(
                ResidualUnit(
                    spatial_dims=3,
                    in_channels=in_ch,
                    out_channels=out_ch,
                    strides=2,
                    subunits=num_res_units,
                    act="PRELU",
                    norm=("GROUP", {"num_groups": norm_groups}),
                )
            )
            in_ch = out_ch
        self.stages = nn.ModuleList(stages)
        self.channels = tuple(channels)
        self.in_channels = in_channels
        self.norm_groups = norm_groups
        self.num_res_units = num_res_units

    @property
    def out_dim(self) -> int:
        """Width of the pooled embedding returned by ``forward``."""
        return self.channels[-1]

    @property
    def min_input_size(self) -> int:
        """Smallest spatial edge that survives every stride-2 stage."""
        return 2 ** len(self.channels)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(N, in_channels, D, H, W)`` -> one feature map per stage, finest first."""
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected a (N, {self.in_channels}, D, H, W) batch, got {tuple(x.shape)}"
            )
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 1, D, H, W)`` -> global-average-pooled embedding ``(N, out_dim)``."""
        return self.forward_features(x)[-1].mean(dim=(2, 3, 4))


def resolve_preset(cfg: ModelConfig, *, cuda_available: bool) -> str:
    """Return the concrete preset name for ``cfg.preset`` ("auto" picks by hardware)."""
    if cfg.preset == "auto":
        return "gpu-base" if cuda_available else "cpu-small"
    return cfg.preset


def build_encoder(preset: str, *, in_channels: int = 1) -> MultiModalEncoder:
    """Build the encoder for a preset name from ``PRESETS``."""
    p = look_up(preset, PRESETS, kind="encoder preset")
    return MultiModalEncoder(
        channels=p.channels, num_res_units=p.num_res_units, norm_groups=p.norm_groups,
        in_channels=in_channels,
    )
