"""The pretext benchmark pairs each fine-tuning draw with scratch's same draw."""

from __future__ import annotations

from types import ModuleType

import pytest


def job(variant: str, seed: int, subset: int, dice: float, task: str = "segmentation") -> dict:
    return {"variant": variant, "encoder": None, "task": task, "fraction": 0.1, "seed": seed,
            "subset": subset, "metrics": {"dice_mean": dice}}


def test_every_draw_of_a_seed_is_kept_not_only_the_last(pretext: ModuleType) -> None:
    cfg = pretext.QualityConfig(seeds=(0, 1), label_subsets=3, label_fractions=(0.1,))
    doc = {"jobs": [job("federated", 0, 0, 0.5), job("federated", 0, 1, 0.6), job("federated", 0, 2, 0.7),
                    job("federated", 1, 0, 0.4), job("federated", 1, 0, 0.9, task="classification")]}
    scratch = {"jobs": [job("scratch", s, d, 0.3) for s in (0, 1) for d in range(3)]}
    assert pretext.paired_with_scratch(doc, scratch, cfg) == pytest.approx([20.0, 30.0, 40.0, 10.0])
