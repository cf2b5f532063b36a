"""variance_covariance specifics: both terms against formulas, views, skipping, and that it
spreads collapsed features out."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from shared.config import RunConfig, TrainConfig, VarianceCovarianceConfig
from shared.model import build_encoder
from shared.pretext import TaskContext, build_pretext
from shared.pretext.variance_covariance import EPS, covariance_term, variance_term
from tests.shared.fitting import fit

MODS = ("t1", "t2")


def task(**cfg: Any):
    return build_pretext(VarianceCovarianceConfig(**cfg), context=TaskContext(modalities=MODS, crop_size=16))


def batch(present: list[list[float]], size: int = 16) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    b = len(present)
    image = torch.rand(b, 2, size, size, size, generator=g) + 0.1
    p = torch.tensor(present)
    return {"image": image * p[:, :, None, None, None], "present": p}


def test_variance_term_by_hand() -> None:
    # channel 0: values +-2 (std 2.31 with n - 1): above the target, no penalty;
    # channel 1: constant, std sqrt(EPS): penalty 1 - 0.01.
    z = torch.tensor([[2.0, 5.0], [-2.0, 5.0], [2.0, 5.0], [-2.0, 5.0]])
    expected = (0.0 + (1 - EPS ** 0.5)) / 2
    assert float(variance_term(z, target_std=1.0)) == pytest.approx(expected, rel=1e-6)


def test_covariance_term_by_hand() -> None:
    z = torch.tensor([[1.0, 1.0, 0.0], [-1.0, -1.0, 0.0], [1.0, 1.0, 0.0], [-1.0, -1.0, 0.0]])
    # Cov: channels 0 and 1 identical with variance 4/3, channel 2 constant:
    # off-diagonal (0,1) and (1,0) = 4/3 each -> 2 * (16/9) / 3 channels.
    assert float(covariance_term(z)) == pytest.approx(2 * (16 / 9) / 3, rel=1e-6)
    assert float(covariance_term(torch.randn(20000, 4, generator=torch.Generator().manual_seed(0)))) < 1e-3


def test_views_are_one_crop_per_present_modality_and_flip_with_the_seed() -> None:
    t = task()
    b = batch([[1, 1], [1, 0], [0, 0]])
    views = t.make_views(b, torch.Generator().manual_seed(0))
    assert views.tensors["crops"].shape == (3, 1, 16, 16, 16)
    assert views.num_studies == 2 and views.skipped_studies == 1
    crops = views.tensors["crops"]
    originals = [b["image"][0, 0], b["image"][0, 1], b["image"][1, 0]]
    for crop, original in zip(crops, originals, strict=True):  # each a flip of its source
        assert any(torch.equal(crop[0], original.flip(dims)) if dims else torch.equal(crop[0], original)
                   for dims in ([], [0], [1], [2], [0, 1], [0, 2], [1, 2], [0, 1, 2]))


def test_a_batch_with_one_crop_is_skipped_not_an_error() -> None:
    views = task().make_views(batch([[1, 0], [0, 0]]), torch.Generator().manual_seed(0))
    assert views.empty and views.skipped_studies == 2


def test_weights_scale_the_two_terms() -> None:
    views = task().make_views(batch([[1, 1], [1, 1]]), torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    encoder = build_encoder("cpu-small")
    var_only = float(task(covariance_weight=0.0).loss(views, encoder=encoder, head=torch.nn.Identity()))
    cov_only = float(task(variance_weight=0.0).loss(views, encoder=encoder, head=torch.nn.Identity()))
    both = float(task().loss(views, encoder=encoder, head=torch.nn.Identity()))
    assert var_only > 0 and cov_only > 0 and both == pytest.approx(var_only + cov_only, rel=1e-5)


def test_it_spreads_the_features_of_an_encoder_out() -> None:
    """Fitting the loss (at fedmm's default learning rate) raises the deepest features' effective
    dimensions, the reason it exists."""
    from simulations.report.projection import effective_dimensions

    t = task()
    views = t.make_views(batch([[1, 1]] * 4, size=32), torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    encoder = build_encoder("cpu-small")

    def dims() -> float:
        with torch.no_grad():
            f = encoder.forward_features(views.tensors["crops"])[-1]
        return effective_dimensions(f.permute(0, 2, 3, 4, 1).reshape(-1, f.shape[1]).numpy())

    before = dims()
    first, last = fit(t, views, encoder=encoder, head=torch.nn.Identity(), steps=30, lr=TrainConfig().lr)
    assert last < 0.5 * first and dims() > 2 * before


def test_combines_with_a_pretext_task_in_the_option_form() -> None:
    from shared.pretext_option import parse_pretext_option

    option = parse_pretext_option("plane_intersection,variance_covariance:0.5")
    cfg = RunConfig.model_validate({"pretext": option})
    assert [(c.name, c.weight) for c in cfg.pretext] == [("plane_intersection", 1.0),
                                                          ("variance_covariance", 0.5)]
