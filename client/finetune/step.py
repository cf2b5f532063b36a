"""One optimizer step, shared by the segmentation and classification fine-tuning loops."""

from __future__ import annotations

import torch


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor,
                   schedule: torch.optim.lr_scheduler.LRScheduler | None = None) -> float:
    """Backpropagate ``loss``, step (then ``schedule``, if given), and return its value."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if schedule is not None:
        schedule.step()
    return float(loss.detach())
