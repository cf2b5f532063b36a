"""Every encoder preset by name: fedmm's own (MONAI residual units) and nnU-Net's ResEnc."""

from __future__ import annotations

from shared.config import ConfigError, ModelConfig
from shared.lookup import look_up
from shared.model.encoder import RESIDUAL_UNIT_PRESETS, EncoderPreset, MultiModalEncoder
from shared.model.nnunet_encoder import NNUNET_PRESETS, NnUNetPreset

#: Name -> preset; each preset's ``build(in_channels=...)`` makes the encoder. The names
#: are the choices of ``ModelConfig.preset`` (a test checks that they agree).
PRESETS: dict[str, EncoderPreset | NnUNetPreset] = {**RESIDUAL_UNIT_PRESETS, **NNUNET_PRESETS}


def resolve_preset(cfg: ModelConfig, *, cuda_available: bool) -> str:
    """Return the concrete preset name for ``cfg.preset`` ("auto" picks by hardware)."""
    if cfg.preset == "auto":
        return "gpu-base" if cuda_available else "cpu-small"
    return cfg.preset


def build_encoder(preset: str, *, in_channels: int = 1) -> MultiModalEncoder:
    """Build the encoder for a preset name from ``PRESETS``."""
    return look_up(preset, PRESETS, kind="encoder preset").build(in_channels=in_channels)


def check_crop_size(preset: str, crop_size: int) -> None:
    """Refuse crops too small for ``preset`` before any site trains on them.

    Raises:
        ConfigError: nnU-Net's encoder (InstanceNorm) needs more than one voxel at its
            deepest stage; the message names the smallest crop that works.
    """
    minimum = look_up(preset, PRESETS, kind="encoder preset").min_crop_size
    if crop_size < minimum:
        raise ConfigError(
            f"data.crop_size = {crop_size} is too small for the {preset} encoder: its "
            f"deepest stage would normalize a single voxel. Expected crop_size >= {minimum}; "
            f"set [data] crop_size = {max(minimum, 48)} (or pick another model.preset)."
        )
