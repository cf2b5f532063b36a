"""Picks the torch device and mixed-precision context for a site at run time."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

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


@contextlib.contextmanager
def autocast_for(device: torch.device, *, enabled: bool) -> Iterator[None]:
    """bfloat16 autocast on CUDA (no loss scaling needed); a no-op on CPU."""
    if enabled and device.type == "cuda":
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            yield
    else:
        yield
