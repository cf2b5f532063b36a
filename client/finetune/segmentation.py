"""Segmentation fine-tuning: BraTS regions (TC, WT, ET) with Dice + BCE, scored with MONAI Dice."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from monai.losses import DiceCELoss
from monai.metrics import DiceMetric
from monai.transforms import (
    Compose,
    ConvertToMultiChannelBasedOnBratsClasses,
    FgBgToIndicesd,
    RandAdjustContrastd,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandScaleIntensityd,
    SpatialPadd,
)

from client.finetune.early_stopping import EarlyStopping
from client.finetune.small_regions import remove_small_regions
from client.finetune.step import optimizer_step

REGIONS = ("tc", "wt", "et")  # MONAI's BraTS channel order: tumour core, whole tumour, enhancing


def _prepare(samples: Sequence[dict[str, Any]], crop: int) -> list[dict[str, Any]]:
    """Pad once and locate tumour/background voxels once per study (not once per crop)."""
    pad = Compose([SpatialPadd(["image", "label"], spatial_size=(crop, crop, crop)),
                   FgBgToIndicesd("label", image_key="image")])
    return [pad({"image": s["image"], "label": s["label"]}) for s in samples]


def _crop_transform(crop: int, seed: int, *, augment_intensity: bool = False) -> Compose:
    """Label-balanced random crops with flips; optionally per-modality intensity changes
    that keep background at 0 (scaling by 1 +- 0.2 and gamma in [0.7, 1.5])."""
    intensity = [RandScaleIntensityd("image", factors=0.2, prob=0.8, channel_wise=True),
                 RandAdjustContrastd("image", prob=0.5, gamma=(0.7, 1.5))] if augment_intensity else []
    t = Compose([
        RandCropByPosNegLabeld(["image", "label"], label_key="label", spatial_size=(crop,) * 3,
                               pos=1, neg=1, num_samples=1, allow_smaller=False,
                               fg_indices_key="label_fg_indices", bg_indices_key="label_bg_indices"),
        RandFlipd(["image", "label"], prob=0.5, spatial_axis=0),
        RandFlipd(["image", "label"], prob=0.5, spatial_axis=1),
        RandFlipd(["image", "label"], prob=0.5, spatial_axis=2),
        *intensity,
    ])
    t.set_random_state(seed=seed)
    return t


def to_regions(label: torch.Tensor) -> torch.Tensor:
    """``(1, D, H, W)`` BraTS 2021 labels -> ``(3, D, H, W)`` float TC/WT/ET masks."""
    return torch.as_tensor(ConvertToMultiChannelBasedOnBratsClasses()(label[0].long())).float()


def train_segmentation(
    model: torch.nn.Module, samples: Sequence[dict[str, Any]], *, steps: int, batch_size: int,
    crop: int, optimizer: torch.optim.Optimizer, device: torch.device, seed: int,
    augment_intensity: bool = False, stopper: EarlyStopping | None = None,
    schedule: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> list[float]:
    """Train on random label-balanced crops (until ``stopper`` says so, if given: it then
    leaves the model with its best weights); returns the loss per step."""
    crop_t = _crop_transform(crop, seed, augment_intensity=augment_intensity)
    prepared = _prepare(samples, crop)
    rng = np.random.default_rng(seed)
    loss_fn = DiceCELoss(sigmoid=True, smooth_nr=1e-5, smooth_dr=1e-5)
    model.train()
    losses = []
    for step in range(1, steps + 1):
        idx = rng.choice(len(samples), size=batch_size, replace=len(samples) < batch_size)
        imgs, labs = [], []
        for i in idx:
            out = crop_t(dict(prepared[i]))[0]
            imgs.append(torch.as_tensor(out["image"]))
            labs.append(to_regions(torch.as_tensor(out["label"])))
        x, y = torch.stack(imgs).float().to(device), torch.stack(labs).to(device)
        losses.append(optimizer_step(optimizer, loss_fn(model(x), y), schedule))
        if stopper is not None and stopper.after_step(step, model):
            break
    if stopper is not None:
        stopper.restore_best(model)
    return losses


@torch.no_grad()
def evaluate_segmentation(
    model: torch.nn.Module, samples: Sequence[dict[str, Any]], *, crop: int, device: torch.device,
    min_region_voxels: int = 0,
) -> dict[str, float]:
    """Whole-volume sliding-window Dice per region and their mean, BraTS-style (a region absent
    from both label and prediction scores 1, any predicted voxel where it is absent scores 0).

    Because a test case without a region scores 0 or 1 on a single voxel, the BraTS mean
    mixes two things; they are also reported apart (keys absent when no case qualifies):
    ``dice_<r>_present`` averages only the cases that have the region (overlap quality) and
    ``false_positive_<r>`` is the share of cases without it that got some prediction anyway.
    With ``min_region_voxels``, each region's predicted components smaller than that are
    removed before scoring (client/finetune/small_regions.py).
    """
    model.eval()
    metric = DiceMetric(include_background=True, reduction="none", ignore_empty=False)
    per_case, present = [], []
    for s in samples:
        x = torch.as_tensor(s["image"]).float()[None].to(device)
        logits = sliding_window_inference(x, roi_size=(crop,) * 3, sw_batch_size=2, predictor=model,
                                          overlap=0.25)
        if not isinstance(logits, torch.Tensor):
            raise TypeError(f"expected the model to return a tensor, got {type(logits).__name__}")
        pred = remove_small_regions((torch.sigmoid(logits) > 0.5).float(), min_size=min_region_voxels)
        target = to_regions(torch.as_tensor(s["label"]))[None].to(device)
        per_case.append(torch.as_tensor(metric(y_pred=pred, y=target)).cpu().numpy()[0])
        present.append(target[0].flatten(1).any(dim=1).cpu().numpy())
    return region_scores(np.stack(per_case), np.stack(present))


def region_scores(dice: np.ndarray, present: np.ndarray) -> dict[str, float]:
    """Summaries of per-case, per-region Dice ``(cases, 3)`` given which regions each case's
    label has ``(cases, 3)`` (see evaluate_segmentation for the keys)."""
    result = {f"dice_{r}": float(dice[:, k].mean()) for k, r in enumerate(REGIONS)}
    result["dice_mean"] = float(np.mean([result[f"dice_{r}"] for r in REGIONS]))
    for k, r in enumerate(REGIONS):
        has = present[:, k].astype(bool)
        if has.any():
            result[f"dice_{r}_present"] = float(dice[has, k].mean())
        if (~has).any():  # BraTS Dice is 0 exactly where something was predicted
            result[f"false_positive_{r}"] = float((dice[~has, k] < 0.5).mean())
    if all(f"dice_{r}_present" in result for r in REGIONS):
        result["dice_present_mean"] = float(np.mean([result[f"dice_{r}_present"] for r in REGIONS]))
    return result
