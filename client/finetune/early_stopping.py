"""Early stopping: score the model on held-out labelled studies, keep the best weights.

Fine-tuning runs up to its step budget, but stops once the score on the early-stopping
split (labelled studies kept out of training) has not improved for ``patience``
evaluations, and the model ends with the weights of its best evaluation. So every variant
is trained to convergence on its own schedule instead of to one fixed step count that
under-trains some and over-fits others (docs/benchmark-protocol.md).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class EarlyStopping:
    """Call :meth:`after_step` after every optimizer step; it returns True when to stop.

    ``score`` evaluates the model on the early-stopping split (higher is better); it may
    switch the model to eval mode, which is undone here.
    """

    score: Callable[[torch.nn.Module], float]
    every: int = 50
    patience: int = 4
    best: float = float("-inf")
    best_step: int = 0
    evaluations: int = 0
    _waited: int = 0
    _best_state: dict[str, Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.every < 1 or self.patience < 1:
            raise ValueError(f"expected every >= 1 and patience >= 1, got every={self.every}, "
                             f"patience={self.patience}")

    def after_step(self, step: int, model: torch.nn.Module) -> bool:
        """Evaluate at every ``every``-th step (1-based); True once patience runs out."""
        if step % self.every:
            return False
        value = float(self.score(model))
        model.train()
        self.evaluations += 1
        if value > self.best:  # NaN never improves
            self.best, self.best_step, self._waited = value, step, 0
            self._best_state = copy.deepcopy(model.state_dict())
            return False
        self._waited += 1
        return self._waited >= self.patience

    def restore_best(self, model: torch.nn.Module) -> None:
        """Load the best evaluation's weights (no-op when nothing was evaluated)."""
        if self._best_state is not None:
            model.load_state_dict(self._best_state)
