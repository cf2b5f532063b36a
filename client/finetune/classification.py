"""Classification fine-tuning: enhancing vs non-enhancing tumour from the whole resized volume."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import Resize
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from client.finetune.data import has_enhancing_tumour
from client.finetune.early_stopping import EarlyStopping
from client.finetune.step import optimizer_step


def _inputs(samples: Sequence[dict[str, Any]], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    resize = Resize((size,) * 3, mode="trilinear")
    x = torch.stack([torch.as_tensor(resize(torch.as_tensor(s["image"]).float())) for s in samples])
    y = torch.tensor([has_enhancing_tumour(s["label"]) for s in samples])
    return x, y


def train_classification(
    model: torch.nn.Module, samples: Sequence[dict[str, Any]], *, steps: int, batch_size: int,
    size: int, optimizer: torch.optim.Optimizer, device: torch.device, seed: int,
    stopper: EarlyStopping | None = None,
    schedule: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> list[float]:
    """Train with random flips on resized whole volumes (until ``stopper`` says so, if
    given: it then leaves the model with its best weights); returns the loss per step."""
    x_all, y_all = _inputs(samples, size)
    gen = torch.Generator().manual_seed(seed)
    counts = torch.bincount(y_all, minlength=2).float().clamp_min(1)
    loss_fn = torch.nn.CrossEntropyLoss(weight=(counts.sum() / (2 * counts)).to(device))
    model.train()
    losses = []
    for step in range(1, steps + 1):
        idx = torch.randint(len(samples), (batch_size,), generator=gen)
        x = x_all[idx]
        for axis in (2, 3, 4):
            if torch.rand(1, generator=gen) < 0.5:
                x = x.flip(axis)
        losses.append(optimizer_step(optimizer, loss_fn(model(x.to(device)), y_all[idx].to(device)),
                                      schedule))
        if stopper is not None and stopper.after_step(step, model):
            break
    if stopper is not None:
        stopper.restore_best(model)
    return losses


@torch.no_grad()
def held_out_loss(
    model: torch.nn.Module, samples: Sequence[dict[str, Any]], *, size: int, device: torch.device
) -> float:
    """Unweighted cross-entropy on ``samples`` (the early-stopping score, negated)."""
    model.eval()
    x, y = _inputs(samples, size)
    logits = torch.cat([model(x[i:i + 4].to(device)).cpu() for i in range(0, len(x), 4)])
    return float(torch.nn.functional.cross_entropy(logits.float(), y))


@torch.no_grad()
def evaluate_classification(
    model: torch.nn.Module, samples: Sequence[dict[str, Any]], *, size: int, device: torch.device
) -> dict[str, float]:
    """Accuracy, balanced accuracy and AUC (NaN when the test set has one class only)."""
    model.eval()
    x, y = _inputs(samples, size)
    prob = torch.cat([torch.softmax(model(x[i:i + 4].to(device)), 1)[:, 1].cpu()
                      for i in range(0, len(x), 4)]).numpy()
    pred = (prob > 0.5).astype(int)
    truth = y.numpy()
    auc = float(roc_auc_score(truth, prob)) if len(np.unique(truth)) == 2 else float("nan")
    return {"acc": float((pred == truth).mean()),
            "balanced_acc": float(balanced_accuracy_score(truth, pred)), "auc": auc}
