"""Picks the torch device, how the model sits on it and the mixed-precision context, at run time."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from shared.config import TrainConfig


def select_device(train: TrainConfig) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if train.device == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "train.device='cuda' but torch sees no CUDA device on this site. Install a CUDA "
            "build of torch and check `nvidia-smi`, or set train.device='auto' or 'cpu'."
        )
    if train.device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def place_model(module: nn.Module, device: torch.device, train: TrainConfig) -> nn.Module:
    """``module`` on ``device``, its 3D convolution weights channels-last when
    ``train.channels_last``, compiled when ``train.compile``; the same module, changed in place.

    Channels-last weights are enough: a convolution runs channels-last when its input or its
    weight is, and its output keeps that format. ``nn.Module.compile`` leaves the module's
    parameters and state-dict keys as they are, so weights load and leave unchanged.
    """
    module.to(device)
    if train.channels_last:
        # Per layer: ``module.to(memory_format=...)`` would refuse a head's 2D convolutions.
        for layer in module.modules():
            if isinstance(layer, nn.Conv3d | nn.ConvTranspose3d):
                layer.weight.data = layer.weight.data.contiguous(memory_format=torch.channels_last_3d)
    if train.compile:
        module.compile()
    return module


def prefetch_ahead(train: TrainConfig, device: torch.device) -> int:
    """Steps whose inputs are made ahead (client/prefetch.py): 1 when ``train.prefetch`` is
    ``on``, or ``auto`` on CUDA; else 0."""
    return int(train.prefetch == "on" or (train.prefetch == "auto" and device.type == "cuda"))


@contextlib.contextmanager
def autocast_for(device: torch.device, *, enabled: bool) -> Iterator[None]:
    """bfloat16 autocast on CUDA (no loss scaling needed); a no-op on CPU."""
    if enabled and device.type == "cuda":
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            yield
    else:
        yield
