"""A site's local state on its own disk: heads, site-local encoder parts, optimizer.

Flower's ``context.state`` is lost when a SuperNode restarts (FLOWER_NOTES.md 2.2), so
everything that must never leave the site and must survive a restart lives here.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

STATE_FILE = "site_state.pt"


@dataclass
class SiteState:
    """What a site keeps between rounds.

    Attributes:
        heads: task name -> head state dict.
        encoder_local: site-local encoder entries (e.g. normalization parameters).
        optimizer: the local optimizer's state dict (None before the first round).
        optimizer_signature: the parameter layout the optimizer state belongs to.
        rounds: server rounds this site has trained in.
        fedema_encoder: FedEMA only: the global encoder entries as this site left them
            after its last local training (W_k), empty before its first FedEMA round.
        fedema_lambda: FedEMA only: lambda, fixed in the site's first blended round
            (None until then).
        fedema_round: FedEMA only: the server round ``fedema_encoder`` was trained in
            (0 = none); a round that is not later than it starts the blending afresh.

    State files written before a field existed load with that field's default.
    """

    heads: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    encoder_local: dict[str, torch.Tensor] = field(default_factory=dict)
    optimizer: dict[str, Any] | None = None
    optimizer_signature: str = ""
    rounds: list[int] = field(default_factory=list)
    fedema_encoder: dict[str, torch.Tensor] = field(default_factory=dict)
    fedema_lambda: float | None = None
    fedema_round: int = 0

    @classmethod
    def load(cls, state_dir: Path) -> SiteState:
        """Read the state, or return an empty one for a new site."""
        path = state_dir / STATE_FILE
        if not path.exists():
            return cls()
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # a torn or foreign file: say which and how to recover
            raise ValueError(
                f"Cannot read the site state {path} ({err}). It may be from another fedmm "
                f"version or damaged; move it away to start this site's local state afresh."
            ) from err
        return cls(**raw)

    def save(self, state_dir: Path) -> Path:
        """Write atomically (temp file + rename), so a crash never leaves a torn file."""
        state_dir.mkdir(parents=True, exist_ok=True)
        path = state_dir / STATE_FILE
        fd, tmp = tempfile.mkstemp(dir=state_dir, prefix=".site_state.", suffix=".tmp")
        os.close(fd)
        torch.save(self.__dict__, tmp)
        os.replace(tmp, path)
        return path
