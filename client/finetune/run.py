"""One fine-tuning run: build the model from an encoder (or scratch), train, test, report."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from client.device import select_device
from client.finetune.classification import (
    evaluate_classification,
    held_out_loss,
    train_classification,
)
from client.finetune.config import FinetuneConfig
from client.finetune.data import early_stopping_split, label_subset, labelled_samples
from client.finetune.early_stopping import EarlyStopping
from client.finetune.segmentation import evaluate_segmentation, train_segmentation
from client.finetune.small_regions import min_voxels
from shared.config import ModelConfig, TrainConfig
from shared.model import build_classifier, build_segmenter, resolve_preset
from shared.model.downstream import encoder_parameters

RESULT_FILE = "finetune.json"


@dataclass
class FinetuneResult:
    """Test-site metrics and what produced them."""

    task: str
    encoder: str
    metrics: dict[str, float]
    train_studies: int
    test_studies: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    early_stopping_studies: int = 0      # held out of train_studies for early stopping
    best_step: int | None = None         # the step whose weights were kept (early stopping)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def resolve_encoder(encoder: str | Path | None) -> Path | None:
    """``none`` -> None (scratch); a run folder -> its encoder.safetensors; a file -> itself."""
    if encoder is None or str(encoder).lower() == "none":
        return None
    path = Path(encoder)
    if path.is_dir():
        path = path / "encoder.safetensors"
    if not path.is_file():
        raise ValueError(f"--encoder {encoder}: expected a run folder holding encoder.safetensors, "
                         f"the file itself, or 'none' for training from scratch; found no {path}.")
    return path


def parameter_groups(model: torch.nn.Module, cfg: FinetuneConfig) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: the encoder at ``lr * encoder_lr_scale`` (or frozen
    by a linear probe), everything new at ``lr``."""
    encoder = encoder_parameters(model)
    ids = {id(p) for p in encoder}
    groups: list[dict[str, Any]] = [{"params": [p for p in model.parameters() if id(p) not in ids]}]
    if cfg.linear_probe:
        for p in encoder:
            p.requires_grad_(False)
    else:
        groups.append({"params": encoder, "lr": cfg.lr * cfg.encoder_lr_scale})
    return groups


def encoder_warmup(optimizer: torch.optim.Optimizer,
                   cfg: FinetuneConfig) -> torch.optim.lr_scheduler.LambdaLR | None:
    """With ``encoder_frozen_steps`` N: the encoder group (of :func:`parameter_groups`) at
    learning rate 0 for optimizer steps 1..N, at its own rate after; the head always at its
    rate. AdamW then leaves the encoder exactly as it was (its decoupled weight decay
    scales with the learning rate too). None when there is no warm-up."""
    frozen = cfg.encoder_frozen_steps
    if not frozen:  # linear_probe (one group) never comes with frozen steps: the config refuses it
        return None
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, [lambda _: 1.0, lambda done: 0.0 if done < frozen else 1.0])


def scratch_preset(cfg: FinetuneConfig, device: torch.device) -> str:
    """The encoder preset a from-scratch network gets on ``device`` (auto: gpu-base on CUDA,
    like pretraining's auto on the same machine; else cpu-small)."""
    return resolve_preset(ModelConfig(preset=cfg.preset), cuda_available=device.type == "cuda")


def region_voxels(cfg: FinetuneConfig) -> int:
    """``cfg.min_region_ml`` in voxels at the data's isotropic spacing."""
    return min_voxels(cfg.min_region_ml, cfg.data.spacing_mm)


def early_stopper(cfg: FinetuneConfig, held: list[dict[str, Any]],
                  device: torch.device) -> EarlyStopping:
    """The early stopping of ``cfg`` scored on the held-out labelled studies ``held``."""
    def score(model: torch.nn.Module) -> float:
        if cfg.task == "segmentation":
            return evaluate_segmentation(model, held, crop=cfg.crop_size, device=device,
                                         min_region_voxels=region_voxels(cfg))["dice_mean"]
        return -held_out_loss(model, held, size=cfg.class_size, device=device)

    return EarlyStopping(score=score, every=cfg.eval_every, patience=cfg.patience)


def run_finetune(
    *, encoder: str | Path | None, cfg: FinetuneConfig, data_root: Path,
    train_sites: Sequence[str], test_sites: Sequence[str], cache_dir: Path,
    out_dir: Path | None = None,
) -> FinetuneResult:
    """Fine-tune on the train sites' labelled studies (a seeded fraction) and test on others."""
    if set(train_sites) & set(test_sites):
        raise ValueError(f"train and test sites overlap: {sorted(set(train_sites) & set(test_sites))}; "
                         "leave-site-out evaluation needs disjoint sites.")
    started = time.perf_counter()
    path = resolve_encoder(encoder)
    device = select_device(TrainConfig())
    train_all = labelled_samples(data_root, train_sites, data=cfg.data, cache_dir=cache_dir)
    test = labelled_samples(data_root, test_sites, data=cfg.data, cache_dir=cache_dir)
    if not test:
        raise ValueError(f"the test sites {list(test_sites)} have no labelled studies.")
    train = label_subset(train_all, fraction=cfg.label_fraction, seed=cfg.seed)
    held: list[dict[str, Any]] = []
    if cfg.early_stopping:
        train, held = early_stopping_split(train, fraction=cfg.early_stopping_fraction, seed=cfg.seed)
    m = len(cfg.data.modalities)
    preset = scratch_preset(cfg, device)
    torch.manual_seed(cfg.seed)  # same decoder/head initialisation for every variant
    model: torch.nn.Module
    if cfg.task == "segmentation":
        model = build_segmenter(path, in_channels=m, out_channels=3, preset=preset,
                                context_fusion=cfg.context_fusion,
                                context_dilations=cfg.context_dilations)
    else:
        model = build_classifier(path, in_channels=m, num_classes=2, preset=preset,
                                 context_fusion=cfg.context_fusion,
                                 context_dilations=cfg.context_dilations)
    model = model.to(device)
    opt = torch.optim.AdamW(parameter_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
    stopper = early_stopper(cfg, held, device) if held else None
    schedule = encoder_warmup(opt, cfg)
    if cfg.task == "segmentation":
        losses = train_segmentation(model, train, steps=cfg.steps, batch_size=cfg.batch_size,
                                    crop=cfg.crop_size, optimizer=opt, device=device, seed=cfg.seed,
                                    augment_intensity=cfg.augment_intensity, stopper=stopper,
                                    schedule=schedule)
        metrics = evaluate_segmentation(model, test, crop=cfg.crop_size, device=device,
                                        min_region_voxels=region_voxels(cfg))
    else:
        losses = train_classification(model, train, steps=cfg.steps, batch_size=cfg.batch_size,
                                      size=cfg.class_size, optimizer=opt, device=device, seed=cfg.seed,
                                      stopper=stopper, schedule=schedule)
        metrics = evaluate_classification(model, test, size=cfg.class_size, device=device)
    result = FinetuneResult(
        task=cfg.task, encoder=str(path) if path else "none", metrics=metrics,
        train_studies=len(train) + len(held), test_studies=len(test),
        seconds=time.perf_counter() - started, losses=losses,
        config=json.loads(cfg.model_dump_json()), early_stopping_studies=len(held),
        best_step=stopper.best_step if stopper and stopper.evaluations else None,
    )
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / RESULT_FILE).write_text(result.to_json())
    return result
