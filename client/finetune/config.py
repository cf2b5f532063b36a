"""The fine-tuning settings, shared by every variant so that comparisons are fair."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from shared.config import DataConfig, FrozenModel
from shared.model.context_fusion import DEFAULT_DILATIONS, validate_dilations

#: What a fine-tuning trains: a segmentation decoder or a study-level classifier.
FinetuneTask = Literal["segmentation", "classification"]


class FinetuneConfig(FrozenModel):
    """Same seeds, splits and budget for every variant (scratch, local, federated, ...)."""

    task: FinetuneTask = "segmentation"
    label_fraction: float = Field(default=1.0, gt=0, le=1,
                                  description="Fixed, seeded share of labelled training studies.")
    linear_probe: bool = Field(default=False, description="Freeze the encoder; train the head only.")
    steps: int = Field(default=120, ge=1, description="Optimizer steps (with early stopping: "
                       "the most steps).")
    early_stopping: bool = Field(
        default=False, description="Hold out a seeded share of the labelled training studies, "
        "score on them every eval_every steps (segmentation: Dice; classification: "
        "cross-entropy), stop after `patience` evaluations without improvement and keep the "
        "best weights.")
    early_stopping_fraction: float = Field(
        default=0.2, gt=0, lt=1, description="Share of the labelled studies held out for early "
        "stopping (at least 1 study).")
    eval_every: int = Field(default=50, ge=1, description="Steps between early-stopping evaluations.")
    patience: int = Field(default=4, ge=1, description="Evaluations without improvement before "
                          "early stopping ends training.")
    batch_size: int = Field(default=2, ge=1)
    lr: float = Field(default=2e-3, gt=0)
    encoder_lr_scale: float = Field(
        default=1.0, gt=0, le=1, description="The encoder's learning rate is lr x this (the new "
        "decoder/head always trains at lr); below 1 keeps pretrained features from being "
        "overwritten early by gradients of a random head.")
    encoder_frozen_steps: int = Field(
        default=0, ge=0, description="Keep the encoder still (learning rate 0) for the first N "
        "steps while the new decoder/head learns on its features, then train it at its rate "
        "(linear probing, then fine-tuning: LP-FT). 0 trains everything from step 1.")
    augment_intensity: bool = Field(
        default=False, description="Random per-modality intensity scaling and gamma on the "
        "training crops (segmentation), as scanners differ between sites.")
    min_region_ml: float = Field(
        default=0.0, ge=0, le=100, description="Segmentation: remove each predicted region's "
        "connected components smaller than this many millilitres before scoring (early "
        "stopping and test); 0 keeps every predicted voxel.")
    weight_decay: float = Field(default=1e-5, ge=0)
    crop_size: int = Field(
        default=48, ge=16, description="Segmentation crop edge; a multiple of the U-Net's "
        "down-sampling (16 for cpu-small, 32 for gpu-base) avoids padding each crop to one.")
    class_size: int = Field(default=64, ge=16, description="Classification input edge (resized).")
    seed: int = 0
    preset: Literal["auto", "cpu-small", "gpu-base"] = Field(
        default="auto", description="Encoder preset when training from scratch; auto = "
        "gpu-base when fine-tuning on CUDA, else cpu-small, the choice pretraining's auto "
        "makes on the same machine, so scratch is the same network as the pretrained ones.")
    context_fusion: bool = Field(
        default=False, description="Insert SLeM's contextual fusion block (CFB) on the deepest "
        "encoder feature map (segmentation: before the up path; classification: before pooling).")
    context_dilations: tuple[int, ...] = Field(
        default=DEFAULT_DILATIONS, description="Dilations of the CFB's parallel 3x3x3 branches "
        "(our reconstruction, ASPP-like).")
    data: DataConfig = DataConfig()

    @model_validator(mode="after")
    def _probe_or_warmup(self) -> FinetuneConfig:
        if self.linear_probe and self.encoder_frozen_steps:
            raise ValueError(f"linear_probe keeps the encoder frozen for the whole run, so "
                             f"encoder_frozen_steps={self.encoder_frozen_steps} has no effect; "
                             "use one of the two (encoder_frozen_steps=0 with linear_probe).")
        return self

    @field_validator("context_dilations")
    @classmethod
    def _distinct_positive(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        return validate_dilations(v)
