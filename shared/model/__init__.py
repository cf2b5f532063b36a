"""Encoder builders and the site-local / global parameter split."""

from shared.model.downstream import build_classifier, build_segmenter, downstream_encoder
from shared.model.encoder import MultiModalEncoder
from shared.model.nnunet_encoder import NNUNET_PRESETS, NnUNetResidualEncoder
from shared.model.presets import PRESETS, build_encoder, check_crop_size, resolve_preset
from shared.model.pretrained import load_pretrained_encoder
from shared.model.site_local import (
    ENCODER_PREFIX,
    global_parameter_names,
    global_state,
    load_global_state,
)

__all__ = [
    "ENCODER_PREFIX",
    "NNUNET_PRESETS",
    "PRESETS",
    "MultiModalEncoder",
    "NnUNetResidualEncoder",
    "build_classifier",
    "build_encoder",
    "build_segmenter",
    "check_crop_size",
    "downstream_encoder",
    "global_parameter_names",
    "global_state",
    "load_global_state",
    "load_pretrained_encoder",
    "resolve_preset",
]
