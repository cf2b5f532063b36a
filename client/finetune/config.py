"""The fine-tuning settings, shared by every variant so that comparisons are fair."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.config import DataConfig, FrozenModel


class FinetuneConfig(FrozenModel):
    """Same seeds, splits and budget for every variant (scratch, local, federated, ...)."""

    task: Literal["segmentation", "classification"] = "segmentation"
    label_fraction: float = Field(default=1.0, gt=0, le=1,
                                  description="Fixed, seeded share of labelled training studies.")
    linear_probe: bool = Field(default=False, description="Freeze the encoder; train the head only.")
    steps: int = Field(default=120, ge=1, description="Optimizer steps.")
    batch_size: int = Field(default=2, ge=1)
    lr: float = Field(default=2e-3, gt=0)
    weight_decay: float = Field(default=1e-5, ge=0)
    crop_size: int = Field(default=48, ge=16, description="Segmentation crop edge (multiple of 16).")
    class_size: int = Field(default=64, ge=16, description="Classification input edge (resized).")
    seed: int = 0
    preset: Literal["cpu-small", "gpu-base"] = Field(
        default="cpu-small", description="Encoder preset when training from scratch.")
    data: DataConfig = DataConfig()
