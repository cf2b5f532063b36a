"""A tiny finished run folder (encoder.safetensors + model_card.json) without a federation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from server.checkpoints import export_encoder
from shared.config import DataConfig
from shared.model import build_encoder

MODALITIES = ("t1", "t1ce", "t2", "flair")
#: Strings a model card may hold that no export may repeat (paths, site names).
SECRET_PATH = "/data/hospital-secret-a"


def write_run(out: Path, *, preset: str = "cpu-small") -> Path:
    """A run folder as the server writes it, with a seeded encoder of ``preset``."""
    torch.manual_seed(1)
    encoder = build_encoder(preset)
    data = DataConfig(modalities=MODALITIES, crop_size=32, spacing_mm=2.0)
    card = {
        "format": "fedmm-encoder/1", "preset": preset,
        "parameters": sum(p.numel() for p in encoder.parameters()),
        "rounds": 3, "sites": 4, "pretext": "plane_intersection+variance_covariance",
        "strategy": "fedavg", "update_privacy": {"enabled": False},
        "statistics_privacy": {"unit": "patient", "definition": "pure epsilon-DP",
                               "release_epsilons": [1.0, 1.0, 1.0, 1.0], "max_epsilon": 1.0,
                               "total_epsilon": 4.0},
        "final_metrics": {"train_loss": 0.5, "eval_loss": 0.6},
        "site_local": "none",
        "config": {"data": data.model_dump(mode="json"),
                   "sites": [{"name": "hospital-secret-a", "data_dir": SECRET_PATH}]},
    }
    export_encoder(out, encoder.state_dict(), preset=preset, card=card)
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_run(tmp_path_factory.mktemp("run"))
