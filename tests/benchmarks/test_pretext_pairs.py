"""The pretext benchmark pairs each fine-tuning draw with scratch's same draw."""

from __future__ import annotations

from types import ModuleType


def job(variant: str, seed: int, subset: int, dice: float, task: str = "segmentation") -> dict:
    return {"variant": variant, "seed": seed, "subset": subset, "task": task,
            "metrics": {"dice_mean": dice}}


def test_every_draw_of_a_seed_is_kept_not_only_the_last(pretext: ModuleType) -> None:
    doc = {"jobs": [job("federated", 0, 0, 0.5), job("federated", 0, 1, 0.6), job("federated", 0, 2, 0.7),
                    job("federated", 1, 0, 0.4), job("scratch", 0, 0, 0.3),
                    job("federated", 1, 0, 0.9, task="classification")]}
    assert pretext.dice_by_draw(doc, "federated") == {(0, 0): 0.5, (0, 1): 0.6, (0, 2): 0.7, (1, 0): 0.4}
    assert pretext.dice_by_draw(doc, "scratch") == {(0, 0): 0.3}


def test_local_only_jobs_of_one_draw_are_averaged(pretext: ModuleType) -> None:
    doc = {"jobs": [job("local_only", 0, 0, 0.2), job("local_only", 0, 0, 0.4)]}
    assert abs(pretext.dice_by_draw(doc, "local_only")[(0, 0)] - 0.3) < 1e-12
