"""Fit a pretext task on fixed views: the loss-falls checks of every task's tests."""

from __future__ import annotations

import torch
from torch import nn

from shared.model.encoder import MultiModalEncoder
from shared.pretext.base import PretextTask, Views


def fit(task: PretextTask, views: Views, *, encoder: MultiModalEncoder, head: nn.Module,
        steps: int, lr: float = 3e-3) -> tuple[float, float]:
    """Adam on encoder and head for ``steps`` steps on ``views``; the loss before and after."""
    opt = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=lr)
    first = float(task.loss(views, encoder=encoder, head=head).detach())
    for _ in range(steps):
        opt.zero_grad()
        task.loss(views, encoder=encoder, head=head).backward()
        opt.step()
    return first, float(task.loss(views, encoder=encoder, head=head).detach())
