"""Reads what `fedmm export` needs from a run folder: the encoder, its preset and the data recipe."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import safe_open

from server.checkpoints import ENCODER_FILE, MODEL_CARD_FILE
from shared.config import DataConfig


@dataclass(frozen=True)
class RunFolder:
    """A finished run's exported encoder and the settings pretraining used.

    Attributes:
        encoder_path: ``<run>/encoder.safetensors``.
        preset: the encoder preset named in the file's metadata.
        data: the run's data recipe (modalities in stacking order, spacing, crop size,
            intensity percentiles), validated as the ``DataConfig`` the sites used.
        card: ``model_card.json`` as written by the server (may hold paths: render
            only chosen fields from it, never the whole card).
    """

    encoder_path: Path
    preset: str
    data: DataConfig
    card: dict[str, Any]

    @property
    def modalities(self) -> tuple[str, ...]:
        """Input channels of every exported network, in order."""
        return self.data.modalities


def read_run_folder(run_dir: Path) -> RunFolder:
    """Validate ``run_dir`` as the output folder of `simulate` / `fedmm server run`.

    Raises:
        ValueError: the folder, ``encoder.safetensors`` or ``model_card.json`` is missing
            or unreadable; the message says what was expected, what was found and the fix.
    """
    if not run_dir.is_dir():
        raise ValueError(f"Expected RUN_DIR to be a run's output folder, got {str(run_dir)!r}, "
                         "which is not a folder. Pass the --out folder of `simulate` (default "
                         "runs/<timestamp>).")
    encoder_path = run_dir / ENCODER_FILE
    card_path = run_dir / MODEL_CARD_FILE
    missing = [p.name for p in (encoder_path, card_path) if not p.is_file()]
    if missing:
        found = sorted(p.name for p in run_dir.iterdir())[:10]
        raise ValueError(
            f"Expected {ENCODER_FILE} and {MODEL_CARD_FILE} in {run_dir}; missing {missing} "
            f"(the folder holds {found}). A run writes them when its last round finishes: "
            "export a finished run, or resume this one with `simulate --resume RUN_DIR`."
        )
    try:
        with safe_open(str(encoder_path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception as err:  # safetensors raises its own error types
        raise ValueError(f"Expected {encoder_path} to be a safetensors file, but it could not "
                         f"be read ({err}). Re-export it from the run's last checkpoint by "
                         "resuming the run.") from err
    if "preset" not in meta:
        raise ValueError(f"Expected a 'preset' entry in {encoder_path}'s metadata, found "
                         f"{sorted(meta)}; the file was not written by fedmm's export.")
    try:
        card = json.loads(card_path.read_text())
        data = DataConfig.model_validate(card["config"]["data"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"Expected {card_path} to be fedmm's model card with the run's "
                         f"config.data section, but it could not be used ({err}). Copy the "
                         "model_card.json that the run wrote next to encoder.safetensors.") from err
    return RunFolder(encoder_path=encoder_path, preset=meta["preset"], data=data, card=card)
