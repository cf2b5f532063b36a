"""AdaDN against its formula, written out here independently."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shared.adadn import adadn, histogram_match


def reference(x, mu_s, sd_s, mu_t, sd_t, lam):
    mu = (1 - lam) * mu_s + lam * mu_t
    sd = (1 - lam) * sd_s + lam * sd_t
    out = sd * (x - mu_s) / (sd_s + 1e-6) + mu
    return torch.where(x != 0, out, torch.zeros_like(x))


@pytest.mark.parametrize("lam", [1.0, 0.0, 0.3], ids=["full", "identity", "blend"])
def test_adadn_matches_formula(lam: float) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 5, 6, 7, generator=g) + 0.1
    x[:, :, :2] = 0  # background
    mu_s, sd_s = torch.tensor([0.4, 0.5, 0.6]), torch.tensor([0.1, 0.2, 0.15])
    mu_t, sd_t = torch.tensor([0.3, 0.7, 0.5]), torch.tensor([0.05, 0.25, 0.2])
    out = adadn(x, src_mean=mu_s, src_std=sd_s, tgt_mean=mu_t, tgt_std=sd_t, lam=lam)
    v = (3, 1, 1, 1, 1)
    ref = reference(x, mu_s.view(v), sd_s.view(v), mu_t.view(v), sd_t.view(v), lam)
    torch.testing.assert_close(out, ref)


def test_adadn_moves_foreground_moments_to_target() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 1, 16, 16, 16, generator=g) * 0.1 + 0.5
    fg = x != 0
    mu_s, sd_s = x[fg].mean().view(1), x[fg].std().view(1)
    out = adadn(x, src_mean=mu_s, src_std=sd_s, tgt_mean=torch.tensor([0.2]),
                tgt_std=torch.tensor([0.05]))
    assert out[fg].mean().item() == pytest.approx(0.2, abs=1e-3)
    assert out[fg].std().item() == pytest.approx(0.05, abs=1e-3)


def test_adadn_keeps_background_zero() -> None:
    x = torch.zeros(2, 1, 4, 4, 4)
    x[:, :, 1:3, 1:3, 1:3] = 0.5
    out = adadn(x, src_mean=torch.full((2,), 0.5), src_std=torch.full((2,), 0.1),
                tgt_mean=torch.full((2,), 0.9), tgt_std=torch.full((2,), 0.1))
    assert (out[x == 0] == 0).all()


def test_adadn_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"src_mean of shape \(2,\)"):
        adadn(torch.ones(2, 1, 2, 2, 2), src_mean=torch.ones(3), src_std=torch.ones(2),
              tgt_mean=torch.ones(2), tgt_std=torch.ones(2))


def numpy_quantile_map(x: np.ndarray, src_hist: np.ndarray, tgt_hist: np.ndarray) -> np.ndarray:
    """F_tgt^-1(F_src(x)) with numpy.interp, histograms over [0, 1] (the reference)."""
    edges = np.linspace(0, 1, len(src_hist) + 1)

    def cdf(h: np.ndarray) -> np.ndarray:
        h = h + 1e-6
        return np.concatenate([[0.0], np.cumsum(h) / h.sum()])

    return np.interp(np.interp(x, edges, cdf(src_hist)), cdf(tgt_hist), edges)


def test_histogram_match_matches_numpy_reference() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 1, 4, 5, 6, generator=g) * 0.9 + 0.05
    x[:, :, 0] = 0
    src = torch.rand(2, 8, generator=g)
    src = src / src.sum(1, keepdim=True)
    tgt = torch.tensor([[0, 0, 0, 0, 0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0, 0, 0, 0, 0, 0]])
    out = histogram_match(x, src_hist=src, tgt_hist=tgt)
    for b in range(2):
        fg = x[b] != 0
        ref = numpy_quantile_map(x[b][fg].double().numpy(), src[b].double().numpy(),
                                 tgt[b].double().numpy())
        np.testing.assert_allclose(out[b][fg].numpy(), ref, atol=1e-4)
        assert torch.all(out[b][~fg] == 0)


def test_histogram_match_moves_a_uniform_image_onto_the_target_distribution() -> None:
    x = torch.linspace(0.001, 0.999, 20_000).view(1, 1, 20, 25, 40)
    uniform = torch.full((1, 10), 0.1)
    bright = torch.tensor([[0, 0, 0, 0, 0, 0, 0, 0.5, 0.5, 0]])  # all mass in [0.7, 0.9)
    out = histogram_match(x, src_hist=uniform, tgt_hist=bright)
    assert float(out.min()) > 0.69 and float(out.max()) < 0.91
    assert abs(float(out.mean()) - 0.8) < 0.01
    assert torch.all(out.flatten().diff() >= -1e-6)  # intensity order kept
    same = histogram_match(x, src_hist=uniform, tgt_hist=uniform)
    torch.testing.assert_close(same, x, atol=1e-4, rtol=0)
    half = histogram_match(x, src_hist=uniform, tgt_hist=bright, lam=0.5)
    torch.testing.assert_close(half, 0.5 * x + 0.5 * out)


def test_histogram_match_rejects_mismatched_bins() -> None:
    with pytest.raises(ValueError, match="same bins"):
        histogram_match(torch.ones(1, 1, 2, 2, 2), src_hist=torch.ones(1, 4),
                        tgt_hist=torch.ones(1, 8))
