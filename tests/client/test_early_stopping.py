"""Early stopping: when it stops, which weights it keeps, how the labelled studies split."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from client.finetune import FinetuneConfig, run_finetune
from client.finetune.data import early_stopping_split
from client.finetune.early_stopping import EarlyStopping
from shared.config import DataConfig
from tests.client.site_data import SPACING, write_site


def scripted(scores: list[float]) -> EarlyStopping:
    """An EarlyStopping whose evaluations return ``scores`` in turn, evaluating every step."""
    it = iter(scores)
    return EarlyStopping(score=lambda model: next(it), every=1, patience=2)


def test_stops_after_patience_evaluations_without_improvement_and_keeps_the_best_weights() -> None:
    model = torch.nn.Linear(2, 1)
    stopper = scripted([0.1, 0.5, 0.4, 0.5, 0.3])
    stops = []
    for step in range(1, 6):
        with torch.no_grad():
            model.bias.fill_(float(step))  # the weights "after" each step
        stops.append(stopper.after_step(step, model))
    # 0.5 at step 2 is the best; 0.4 and an equal 0.5 are no improvement -> stop at step 4
    assert stops[:4] == [False, False, False, True]
    stopper.restore_best(model)
    assert stopper.best_step == 2 and stopper.best == 0.5
    assert float(model.bias) == 2.0


def test_evaluates_only_every_nth_step_and_nan_never_improves() -> None:
    calls = []

    def score(model: torch.nn.Module) -> float:
        calls.append(1)
        return float("nan")

    stopper = EarlyStopping(score=score, every=3, patience=2)
    model = torch.nn.Linear(1, 1)
    stops = [stopper.after_step(s, model) for s in range(1, 7)]
    assert len(calls) == 2 and stops == [False] * 5 + [True]
    stopper.restore_best(model)  # nothing to restore: no error
    assert stopper.best_step == 0


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="every >= 1"):
        EarlyStopping(score=lambda m: 0.0, every=0)


@pytest.mark.parametrize("n, held", [(2, 1), (3, 1), (10, 2), (30, 6)])
def test_the_split_holds_out_a_seeded_share_and_trains_on_the_rest(n: int, held: int) -> None:
    samples = [{"study_id": str(i)} for i in range(n)]
    train, stop = early_stopping_split(samples, fraction=0.2, seed=3)
    assert len(stop) == held and len(train) == n - held
    assert {s["study_id"] for s in train}.isdisjoint(s["study_id"] for s in stop)
    again = early_stopping_split(samples, fraction=0.2, seed=3)
    assert again == (train, stop)
    other = [early_stopping_split(samples, fraction=0.2, seed=s)[1] for s in range(10)]
    assert n == 2 or len({tuple(s["study_id"] for s in o) for o in other}) > 1


def test_one_study_cannot_be_split() -> None:
    with pytest.raises(ValueError, match="at least 2 labelled studies"):
        early_stopping_split([{"study_id": "a"}], fraction=0.2, seed=0)


@pytest.mark.parametrize("task", ["segmentation", "classification"])
def test_finetune_with_early_stopping_reports_the_kept_step(tmp_path: Path, task: str) -> None:
    for name in ("a", "b"):
        write_site(tmp_path / "data" / name, num_studies=3)
    cfg = FinetuneConfig(task=task, steps=6, crop_size=16, class_size=16, early_stopping=True,
                         eval_every=2, patience=1, data=DataConfig(spacing_mm=SPACING, crop_size=16,
                                                                  hist_bins=8))
    res = run_finetune(encoder=None, cfg=cfg, data_root=tmp_path / "data", train_sites=["a"],
                       test_sites=["b"], cache_dir=tmp_path / "cache")
    assert res.train_studies == 3 and res.early_stopping_studies == 1
    assert res.best_step in (2, 4, 6)
    assert 2 <= len(res.losses) <= 6
