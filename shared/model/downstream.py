"""Builds downstream networks from an exported encoder (or from scratch) in one call."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from shared.model.context_fusion import DEFAULT_DILATIONS, ContextFusionBlock
from shared.model.fusion import ModalityFusionEncoder
from shared.model.presets import build_encoder
from shared.model.pretrained import load_pretrained_encoder
from shared.model.unet import EncoderClassifier, EncoderUNet


def downstream_encoder(
    encoder: str | Path | None, *, in_channels: int, preset: str = "cpu-small"
) -> ModalityFusionEncoder:
    """An encoder taking ``in_channels`` stacked modalities (shared/model/fusion.py).

    Args:
        encoder: path to ``encoder.safetensors`` (a fedmm export), or None for random
            initialisation (training from scratch); ``preset`` applies only then.
        in_channels: number of stacked input modalities.
    """
    single = build_encoder(preset) if encoder is None else load_pretrained_encoder(encoder)
    return ModalityFusionEncoder(single, num_modalities=in_channels)


def context_fusion_block(
    fused: ModalityFusionEncoder, *, enabled: bool, dilations: Sequence[int] = DEFAULT_DILATIONS
) -> ContextFusionBlock | None:
    """SLeM's CFB for the encoder's deepest feature map, or None when not ``enabled``."""
    if not enabled:
        return None
    return ContextFusionBlock(fused.out_dim, dilations=dilations, norm_groups=fused.norm_groups)


def build_segmenter(
    encoder: str | Path | None, *, in_channels: int, out_channels: int, preset: str = "cpu-small",
    context_fusion: bool = False, context_dilations: Sequence[int] = DEFAULT_DILATIONS,
) -> EncoderUNet:
    """A U-Net whose down path is the (pretrained) encoder.

    ``context_fusion`` inserts SLeM's contextual fusion block (dilations
    ``context_dilations``) on the deepest feature map; it is new and trains in fine-tuning.

    Example (three lines, outside fedmm's own tools)::

        from shared.model import build_segmenter
        net = build_segmenter("runs/x/encoder.safetensors", in_channels=4, out_channels=3)
        logits = net(volume)   # (N, 4, 96, 96, 96) -> (N, 3, 96, 96, 96)
    """
    fused = downstream_encoder(encoder, in_channels=in_channels, preset=preset)
    cfb = context_fusion_block(fused, enabled=context_fusion, dilations=context_dilations)
    return EncoderUNet(fused, out_channels=out_channels, context_fusion=cfb)


def build_classifier(
    encoder: str | Path | None, *, in_channels: int, num_classes: int, preset: str = "cpu-small",
    context_fusion: bool = False, context_dilations: Sequence[int] = DEFAULT_DILATIONS,
) -> EncoderClassifier:
    """A pooled-feature classifier on the (pretrained) encoder (CFB before the pooling if
    ``context_fusion``)."""
    fused = downstream_encoder(encoder, in_channels=in_channels, preset=preset)
    cfb = context_fusion_block(fused, enabled=context_fusion, dilations=context_dilations)
    return EncoderClassifier(fused, num_classes=num_classes, context_fusion=cfb)


def encoder_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters of a downstream model's encoder (frozen by a linear probe)."""
    enc = getattr(model, "encoder", None)
    if isinstance(enc, ModalityFusionEncoder):
        return list(enc.encoder.parameters())  # the fusion layer is new: it always trains
    if not isinstance(enc, torch.nn.Module):
        raise ValueError(f"expected a model with an `encoder` attribute, got {type(model).__name__}")
    return list(enc.parameters())
