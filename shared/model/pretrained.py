"""Loads an exported fedmm encoder (``encoder.safetensors``) for downstream use."""

from __future__ import annotations

from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file

from shared.model.encoder import MultiModalEncoder
from shared.model.presets import build_encoder


def load_pretrained_encoder(path: str | Path) -> MultiModalEncoder:
    """Build the encoder named in the file's metadata and load its weights.

    Example:
        >>> encoder = load_pretrained_encoder("runs/demo/encoder.safetensors")
        >>> emb = encoder(volume)   # (N, 1, D, H, W) -> (N, out_dim)
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"expected an exported encoder file, got {str(path)!r} (not a file). "
                         "Run `simulate` first; it writes <out>/encoder.safetensors.")
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    if "preset" not in meta:
        raise ValueError(f"{path} has no 'preset' metadata; it was not written by fedmm's export.")
    encoder = build_encoder(meta["preset"])
    encoder.load_state_dict(load_file(str(path)))
    return encoder
