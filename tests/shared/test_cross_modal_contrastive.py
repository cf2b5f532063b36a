"""cross_modal_contrastive specifics: positives are modalities of one study, AdaDN targets."""

from __future__ import annotations

import pytest
import torch

from shared.config import AdaDNConfig, CrossModalContrastiveConfig
from shared.pretext import TaskContext, build_pretext
from shared.stats_schema import ModalityStats, StatsPool

MODS = ("t1", "t2")
HIST = (0.25, 0.25, 0.25, 0.25)


def batch() -> dict[str, torch.Tensor]:
    image = torch.zeros(3, 2, 8, 8, 8)
    for b in range(3):
        image[b, 0, 2:6, 2:6, 2:6] = 0.2 + 0.1 * b   # "t1" of study b
        image[b, 1, 2:6, 2:6, 2:6] = 0.6 + 0.1 * b   # "t2" of study b
    return {"image": image, "present": torch.ones(3, 2),
            "fg_mean": torch.tensor([[0.2, 0.6], [0.3, 0.7], [0.4, 0.8]]),
            "fg_std": torch.full((3, 2), 0.1), "fg_hist": torch.full((3, 2, 4), 0.25)}


def test_views_are_two_different_modalities_of_the_same_study() -> None:
    cfg = CrossModalContrastiveConfig(adadn=AdaDNConfig(probability=0.0))
    task = build_pretext(cfg, context=TaskContext(modalities=MODS))
    views = task.make_views(batch(), torch.Generator().manual_seed(0))
    v1, v2 = views.tensors["view1"], views.tensors["view2"]
    for b in range(3):
        a, c = float(v1[b].max()), float(v2[b].max())
        assert {round(a, 3), round(c, 3)} == {round(0.2 + 0.1 * b, 3), round(0.6 + 0.1 * b, 3)}


def test_adadn_uses_pool_targets_and_falls_back_to_own_stats() -> None:
    pooled = StatsPool(modalities={"t1": (ModalityStats(mean=0.9, std=0.01, histogram=HIST),)})
    own = {"t2": ModalityStats(mean=0.05, std=0.01, histogram=HIST)}
    cfg = CrossModalContrastiveConfig(adadn=AdaDNConfig(probability=1.0))
    task = build_pretext(cfg, context=TaskContext(modalities=MODS, pool=pooled, own_stats=own))
    views = task.make_views(batch(), torch.Generator().manual_seed(0))
    for key in ("view1", "view2"):
        for b in range(3):
            fg = views.tensors[key][b][views.tensors[key][b] != 0]
            # constant foreground -> lands on the target mean (t1 from pool, t2 own fallback)
            assert round(float(fg.mean()), 2) in (0.9, 0.05)


def foreground_means(views, key: str) -> list[float]:
    t = views.tensors[key]
    return [float(t[b][t[b] != 0].mean()) for b in range(t.shape[0])]


def test_own_site_target_ignores_the_pool() -> None:
    pooled = StatsPool(modalities={m: (ModalityStats(mean=0.9, std=0.01, histogram=HIST),)
                                   for m in MODS})
    own = {m: ModalityStats(mean=0.05, std=0.01, histogram=HIST) for m in MODS}
    cfg = CrossModalContrastiveConfig(adadn=AdaDNConfig(probability=1.0, target="own_site"))
    task = build_pretext(cfg, context=TaskContext(modalities=MODS, pool=pooled, own_stats=own))
    views = task.make_views(batch(), torch.Generator().manual_seed(0))
    for key in ("view1", "view2"):
        assert [round(v, 2) for v in foreground_means(views, key)] == [0.05] * 3


def test_pool_jitter_draws_around_the_pool_entry_and_replays() -> None:
    pooled = StatsPool(modalities={m: (ModalityStats(mean=0.5, std=0.1, histogram=HIST),)
                                   for m in MODS})
    cfg = CrossModalContrastiveConfig(
        adadn=AdaDNConfig(probability=1.0, target="pool_jitter", jitter=0.5))
    task = build_pretext(cfg, context=TaskContext(modalities=MODS, pool=pooled))
    views = task.make_views(batch(), torch.Generator().manual_seed(0))
    means = foreground_means(views, "view1") + foreground_means(views, "view2")
    # mean 0.5 +- 0.5 * 0.1, and not all equal to the pool entry
    assert all(0.449 < m < 0.551 for m in means)
    assert max(abs(m - 0.5) for m in means) > 0.005
    again = task.make_views(batch(), torch.Generator().manual_seed(0))
    torch.testing.assert_close(again.tensors["view1"], views.tensors["view1"])


@pytest.mark.parametrize("batch_bins", [4, 8], ids=["same-bins", "pool-resampled"])
def test_histogram_matching_moves_views_into_the_target_intensity_range(batch_bins: int) -> None:
    high = (0.0, 0.0, 0.0, 1.0)  # all target mass in [0.75, 1]
    pooled = StatsPool(modalities={m: (ModalityStats(mean=0.9, std=0.05, histogram=high),)
                                   for m in MODS})
    cfg = CrossModalContrastiveConfig(adadn=AdaDNConfig(probability=1.0, matching="histogram"))
    task = build_pretext(cfg, context=TaskContext(modalities=MODS, pool=pooled))
    studies = {**batch(), "fg_hist": torch.full((3, 2, batch_bins), 1 / batch_bins)}
    views = task.make_views(studies, torch.Generator().manual_seed(0))
    for key in ("view1", "view2"):
        assert all(0.75 <= m <= 1.0 for m in foreground_means(views, key))
