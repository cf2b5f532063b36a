"""Per-round checkpoints, resume, and the exported encoder with its model card."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from server.atomic_files import write_atomic
from server.release_checks import restore_pool
from shared.stats_schema import StatsPool

CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "server_state.json"
ENCODER_FILE = "encoder.safetensors"
MODEL_CARD_FILE = "model_card.json"


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
    os.replace(tmp, path)


@dataclass(frozen=True)
class ServerState:
    """What resuming needs: the last completed round, its weights and the pool."""

    last_round: int
    arrays: dict[str, torch.Tensor]
    pool: StatsPool | None


class CheckpointStore:
    """Checkpoints under ``<out_dir>/checkpoints``; ``server_state.json`` points at the last."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.dir = out_dir / CHECKPOINT_DIR

    def save_round(self, server_round: int, arrays: dict[str, torch.Tensor], pool: StatsPool | None,
                   *, config_json: str) -> Path:
        """Save round ``server_round``'s global weights, then point the state file at them."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"round_{server_round:04d}.safetensors"
        _save_tensors(path, arrays, {"round": str(server_round)})
        state = {
            "last_round": server_round,
            "checkpoint": path.name,
            "pool": pool.model_dump(mode="json") if pool is not None else None,
            "config": json.loads(config_json),
        }
        write_atomic(self.out_dir / STATE_FILE, json.dumps(state, indent=2).encode())
        return path

    def load_latest(self) -> ServerState:
        """The last completed round's state, for ``--resume``.

        The statistics pool is validated again (``server/release_checks.py``): entries that
        are not valid are dropped with a warning.

        Raises:
            ValueError: no checkpoint exists in the folder (what was looked for, and where),
                or the saved pool is not a statistics pool at all (with what to do).
        """
        state_path = self.out_dir / STATE_FILE
        if not state_path.exists():
            raise ValueError(
                f"Cannot resume: {state_path} does not exist. Expected the output folder of an "
                "earlier fedmm run (it holds server_state.json and checkpoints/); check the path."
            )
        state = json.loads(state_path.read_text())
        arrays = load_file(self.dir / state["checkpoint"])
        pool = restore_pool(state.get("pool"), source=str(state_path))
        return ServerState(last_round=int(state["last_round"]), arrays=arrays, pool=pool)

    def saved_config(self) -> dict[str, Any] | None:
        """The run config stored with the last checkpoint, if any."""
        state_path = self.out_dir / STATE_FILE
        if not state_path.exists():
            return None
        config: dict[str, Any] = json.loads(state_path.read_text())["config"]
        return config


def export_encoder(
    out_dir: Path, encoder_state: dict[str, torch.Tensor], *, preset: str, card: dict[str, Any]
) -> tuple[Path, Path]:
    """Write ``encoder.safetensors`` (plain encoder keys) and ``model_card.json``.

    Load it back with ``shared.model.load_pretrained_encoder(path)`` or, by hand,
    ``build_encoder(preset).load_state_dict(safetensors.torch.load_file(path))``.
    """
    enc_path = out_dir / ENCODER_FILE
    out_dir.mkdir(parents=True, exist_ok=True)
    _save_tensors(enc_path, encoder_state, {"preset": preset, "format": "fedmm-encoder/1"})
    card_path = out_dir / MODEL_CARD_FILE
    write_atomic(card_path, json.dumps(card, indent=2, default=str).encode())
    return enc_path, card_path
