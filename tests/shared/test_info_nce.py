"""InfoNCE against a reference written with explicit loops."""

from __future__ import annotations

import math

import pytest
import torch

from shared.losses.info_nce import info_nce


def reference_nt_xent(z1: torch.Tensor, z2: torch.Tensor, t: float) -> float:
    u = torch.cat([z1, z2])
    u = u / u.norm(dim=1, keepdim=True)
    n2 = u.shape[0]
    n = n2 // 2
    total = 0.0
    for i in range(n2):
        pos = (i + n) % n2
        num = math.exp(float(u[i] @ u[pos]) / t)
        den = sum(math.exp(float(u[i] @ u[j]) / t) for j in range(n2) if j != i)
        total += -math.log(num / den)
    return total / n2


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
def test_info_nce_matches_reference(temperature: float) -> None:
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    assert info_nce(z1, z2, temperature=temperature).item() == pytest.approx(
        reference_nt_xent(z1, z2, temperature), rel=1e-5)


def test_info_nce_is_low_for_aligned_views() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(8, 16, generator=g)
    aligned = info_nce(z, z + 0.01 * torch.randn(8, 16, generator=g), temperature=0.1)
    random = info_nce(z, torch.randn(8, 16, generator=g), temperature=0.1)
    assert aligned < random


def test_info_nce_needs_negatives() -> None:
    with pytest.raises(ValueError, match="at least 2 pairs"):
        info_nce(torch.ones(1, 4), torch.ones(1, 4), temperature=0.1)
