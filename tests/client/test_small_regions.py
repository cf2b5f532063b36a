"""Small predicted regions removed before scoring: volumes in mL, 26-connected components,
each region on its own, and BraTS-style Dice on a case without the region."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from client.finetune import FinetuneConfig
from client.finetune.segmentation import evaluate_segmentation
from client.finetune.small_regions import min_voxels, remove_small_regions


def test_a_volume_in_ml_is_a_voxel_count_at_the_spacing() -> None:
    assert min_voxels(0.5, 2.0) == 63            # 500 mm^3 / 8 mm^3 = 62.5, rounded up
    assert min_voxels(0.5, 1.0) == 500 and min_voxels(0.0, 2.0) == 0
    with pytest.raises(ValueError, match="expected a volume >= 0 mL"):
        min_voxels(-1.0, 2.0)


def test_components_below_the_size_go_and_the_others_stay() -> None:
    masks = torch.zeros(3, 8, 8, 8)
    masks[0, 0, 0, 0] = masks[0, 1, 1, 1] = 1    # two voxels touching at a corner: one component
    masks[0, 4:7, 4:7, 4:7] = 1                  # 27 voxels
    masks[1, 0, 0, 0] = 1                        # a lone voxel in another region
    masks[2, 0, 0, 0] = masks[2, 0, 0, 2] = 1    # two lone voxels, not touching
    out = remove_small_regions(masks, min_size=2)
    assert out[0].sum() == 29                    # the corner pair counts as 2 and stays
    assert out[1].sum() == 0 and out[2].sum() == 0
    assert torch.equal(remove_small_regions(masks, min_size=28)[0], torch.zeros(8, 8, 8))
    batched = remove_small_regions(masks[None], min_size=2)
    assert batched.shape == (1, 3, 8, 8, 8) and torch.equal(batched[0], out)
    assert remove_small_regions(masks, min_size=0) is masks and masks.sum() == 32  # input untouched


class Speck(torch.nn.Module):
    """Predicts the true whole tumour plus one stray voxel in every region."""

    def __init__(self, label: torch.Tensor) -> None:
        super().__init__()
        self.label = label

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wt = (self.label > 0).float().expand(x.shape[0], 1, *x.shape[2:])
        logits = torch.full((x.shape[0], 3, *x.shape[2:]), -10.0)
        logits[:, 1:2] = 20 * wt - 10
        logits[:, :, 0, 0, 0] = 10.0
        return logits


def test_a_stray_voxel_on_a_case_without_the_region_scores_0_and_removed_scores_1() -> None:
    label = torch.zeros(1, 16, 16, 16)
    label[0, 6:12, 6:12, 6:12] = 2               # oedema only: WT present, TC and ET absent
    sample = {"image": torch.rand(4, 16, 16, 16), "label": label}
    model = Speck(label[None])
    raw = evaluate_segmentation(model, [sample], crop=16, device=torch.device("cpu"))
    kept = evaluate_segmentation(model, [sample], crop=16, device=torch.device("cpu"),
                                 min_region_voxels=2)
    assert raw["dice_tc"] == 0 and raw["dice_et"] == 0 and raw["false_positive_et"] == 1
    assert kept["dice_tc"] == 1 and kept["dice_et"] == 1 and kept["false_positive_et"] == 0
    assert kept["dice_wt"] == pytest.approx(1.0) and raw["dice_wt"] < 1


def test_the_setting_is_checked() -> None:
    assert FinetuneConfig().min_region_ml == 0
    with pytest.raises(ValueError, match="min_region_ml"):
        FinetuneConfig(min_region_ml=-0.5)
    assert np.isclose(FinetuneConfig(min_region_ml=0.5).min_region_ml, 0.5)
