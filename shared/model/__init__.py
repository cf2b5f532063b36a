"""Encoder builders and the site-local / global parameter split."""

from shared.model.downstream import build_classifier, build_segmenter, downstream_encoder
from shared.model.encoder import PRESETS, MultiModalEncoder, build_encoder, resolve_preset
from shared.model.pretrained import load_pretrained_encoder
from shared.model.site_local import (
    ENCODER_PREFIX,
    global_parameter_names,
    global_state,
    load_global_state,
)

__all__ = [
    "ENCODER_PREFIX",
    "PRESETS",
    "MultiModalEncoder",
    "build_classifier",
    "build_encoder",
    "build_segmenter",
    "downstream_encoder",
    "global_parameter_names",
    "global_state",
    "load_global_state",
    "load_pretrained_encoder",
    "resolve_preset",
]
