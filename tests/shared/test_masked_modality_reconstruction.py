"""BrainMVP masked modality reconstruction: masks, templates, views and the loss formula."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from shared.config import MaskedModalityReconstructionConfig
from shared.model import build_encoder
from shared.pretext import TaskContext, build_pretext
from shared.pretext.masked_modality_reconstruction import block_mask, crop_grid

MODS = ("t1", "t1ce", "t2", "flair")


def batch(b: int = 3, size: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(b, 4, size, size, size, generator=g)
    return {"image": image, "present": torch.ones(b, 4),
            "crop_box": torch.tensor([[[0.0] * 3, [1.0] * 3]]).repeat(b, 1, 1)}


def task(round_: int, **cfg: object):
    return build_pretext(MaskedModalityReconstructionConfig(**cfg),  # type: ignore[arg-type]
                         context=TaskContext(modalities=MODS, server_round=round_, crop_size=16))


def test_block_mask_masks_whole_blocks_at_the_ratio() -> None:
    m = block_mask(2, (16, 16, 16), block=8, ratio=0.75, generator=torch.Generator().manual_seed(0))
    assert m.shape == (2, 1, 16, 16, 16)
    blocks = m.view(2, 2, 8, 2, 8, 2, 8).permute(0, 1, 3, 5, 2, 4, 6).reshape(2, 8, -1)
    assert torch.all(blocks.min(-1).values == blocks.max(-1).values)  # constant per block
    assert torch.equal(blocks[:, :, 0].sum(1), torch.tensor([6.0, 6.0]))  # round(0.75 * 8)


def test_crop_grid_of_the_whole_volume_reads_the_template_itself() -> None:
    template = torch.rand(1, 1, 8, 8, 8)
    box = torch.tensor([[[0.0] * 3, [1.0] * 3]])
    out = F.grid_sample(template, crop_grid(box, (8, 8, 8)), align_corners=False)
    torch.testing.assert_close(out, template)


def test_crop_grid_of_a_half_box_reads_that_half() -> None:
    template = torch.arange(8.0).view(1, 1, 8, 1, 1).expand(1, 1, 8, 4, 4).contiguous()
    box = torch.tensor([[[0.5, 0.0, 0.0], [1.0, 1.0, 1.0]]])
    out = F.grid_sample(template, crop_grid(box, (4, 4, 4)), align_corners=False)
    torch.testing.assert_close(out[0, 0, :, 0, 0], torch.tensor([4.0, 5.0, 6.0, 7.0]))


def test_view2_fills_from_another_modality_only_after_the_warm_up() -> None:
    before = task(1, cross_modal_from_round=2).make_views(batch(), torch.Generator().manual_seed(1))
    after = task(2, cross_modal_from_round=2).make_views(batch(), torch.Generator().manual_seed(1))
    assert torch.all(before.tensors["fill2_is_template"] == 1)
    assert torch.all(after.tensors["fill2_is_template"] == 0)
    image = batch()["image"]
    for i in range(3):  # the fill is a *different* modality of the same study
        fill = after.tensors["fill2"][i, 0]
        matches = [m for m in range(4) if torch.equal(fill, image[i, m])]
        assert matches and matches[0] != int(after.tensors["modality"][i])


def test_single_modality_study_falls_back_to_the_template() -> None:
    b = batch()
    b["present"] = torch.tensor([[1.0, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]])
    views = task(5).make_views(b, torch.Generator().manual_seed(0))
    assert views.num_studies == 2 and views.skipped_studies == 1
    assert views.tensors["fill2_is_template"].tolist() == [1.0, 0.0]


def test_loss_matches_the_brainmvp_formula_and_trains_the_templates() -> None:
    t = task(5, contrastive_from_round=5)
    views = t.make_views(batch(), torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    encoder = build_encoder("cpu-small")
    head = t.build_head(encoder)
    loss = t.loss(views, encoder=encoder, head=head)

    v = views.tensors
    templ = head.templates[v["modality"]]  # full box and equal size: the template itself
    templ = F.interpolate(templ, size=(16, 16, 16), mode="trilinear", align_corners=False)
    x1 = v["target"] * (1 - v["mask1"]) + templ * v["mask1"]
    x2 = v["target"] * (1 - v["mask2"]) + v["fill2"] * v["mask2"]
    feats = encoder.forward_features(torch.cat([x1, x2]))
    rec1, rec2 = head.decoder(feats, (16, 16, 16)).split(3)

    def mse_on(mask: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        return ((pred - v["target"]) ** 2)[mask.bool()].mean()

    z1, z2 = head.projection(feats[-1].mean(dim=(2, 3, 4))).split(3)
    u = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = (u @ u.t()).fill_diagonal_(float("-inf"))  # temperature 1.0
    nce = F.cross_entropy(logits, torch.tensor([3, 4, 5, 0, 1, 2]))
    reference = 10 * mse_on(v["mask1"], rec1) + mse_on(v["mask2"], rec2) + nce
    torch.testing.assert_close(loss, reference, rtol=1e-4, atol=1e-5)

    loss.backward()
    assert head.templates.grad is not None and head.templates.grad.abs().sum() > 0


def test_contrastive_term_waits_for_its_round() -> None:
    views = task(2, contrastive_from_round=3).make_views(batch(), torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    encoder = build_encoder("cpu-small")
    early = task(2, contrastive_from_round=3)
    late = task(3, contrastive_from_round=3, cross_modal_from_round=2)
    head = early.build_head(encoder)
    diff = late.loss(views, encoder=encoder, head=head) - early.loss(views, encoder=encoder, head=head)
    assert float(diff) > 0  # InfoNCE is positive
