"""One optimizer step, shared by the segmentation and classification fine-tuning loops."""

from __future__ import annotations

import torch


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> float:
    """Backpropagate ``loss``, step, and return its value."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())
