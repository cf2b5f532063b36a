"""FedEMA: a site blends its own previous encoder into the global one before training.

Zhuang, Wen, Zhang, Yi: "Divergence-aware Federated Self-Supervised Learning", ICLR 2022.
On receiving the global encoder ``W_g`` a site that trained before blends

    W_k <- mu W_k + (1 - mu) W_g,   mu = min(lambda ||W_g - W_k||, 1),

with ``lambda = tau / ||W_g - W_k||`` fixed in the site's first blended round (so ``mu``
equals ``tau`` there and then grows with the divergence). In its first round a site has
no ``W_k`` and starts from ``W_g``. The server runs plain FedAvg. Only the global
(aggregated) encoder entries are blended; site-local parts never leave the site anyway.

Torch only; the site's state file persists ``W_k``, lambda and the round (client/train.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FedEmaBlend:
    """The outcome of one FedEMA blend.

    Attributes:
        arrays: the encoder entries the site trains from this round (wire keys).
        mu: the weight of the site's previous encoder (0 = the global one as received).
        lam: lambda to keep for the next rounds (None while not fixed yet).
        divergence: ``||W_g - W_k||`` over the floating-point entries (0 without ``W_k``).
    """

    arrays: dict[str, torch.Tensor]
    mu: float
    lam: float | None
    divergence: float


def encoder_divergence(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    """``||a - b||``: the L2 norm of the difference over all floating-point entries of ``a``.

    Integer buffers (counters) are not weights and do not count.
    """
    total = 0.0
    for key, value in a.items():
        if value.is_floating_point():
            total += float(torch.sum((value.double() - b[key].double()) ** 2))
    return math.sqrt(total)


def compatible(previous: Mapping[str, torch.Tensor], global_arrays: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``previous`` has exactly the global entries' names and shapes."""
    return previous.keys() == global_arrays.keys() and all(
        tuple(previous[k].shape) == tuple(v.shape) for k, v in global_arrays.items()
    )


def fedema_blend(
    global_arrays: Mapping[str, torch.Tensor],
    previous: Mapping[str, torch.Tensor] | None,
    *,
    lam: float | None,
    tau: float,
) -> FedEmaBlend:
    """Blend the site's previous encoder ``W_k`` into the received global one ``W_g``.

    Args:
        global_arrays: ``W_g``, the global encoder entries as received (wire keys).
        previous: ``W_k``, the same entries as this site left them after its last local
            training, or None/empty in the site's first round (then ``W_g`` is returned).
        lam: lambda fixed in an earlier round, or None to fix it now as
            ``tau / ||W_g - W_k||``.
        tau: FedEMA's ``tau`` (``federation.strategy.fedema_tau``), > 0.

    Returns:
        The blended entries (dtypes of ``W_g``; integer entries taken from ``W_g``), mu,
        lambda and the divergence. When ``W_k == W_g`` there is nothing to blend and lambda
        stays unfixed (it would divide by zero).

    Raises:
        ValueError: ``tau`` is not positive, or ``previous`` does not have the global
            entries' names and shapes (check with :func:`compatible` first).
    """
    if tau <= 0:
        raise ValueError(f"FedEMA tau must be > 0, got {tau}")
    current = {k: v.detach() for k, v in global_arrays.items()}
    if not previous:
        return FedEmaBlend(arrays=current, mu=0.0, lam=lam, divergence=0.0)
    if not compatible(previous, global_arrays):
        raise ValueError(
            "FedEMA: the site's previous encoder does not match the global one "
            f"(got {len(previous)} entries, expected {len(global_arrays)} with the same shapes)"
        )
    divergence = encoder_divergence(current, previous)
    if divergence == 0.0:
        return FedEmaBlend(arrays=current, mu=0.0, lam=lam, divergence=0.0)
    if lam is None:
        lam = tau / divergence
    mu = min(lam * divergence, 1.0)
    blended = {
        k: (mu * previous[k].to(g) + (1.0 - mu) * g) if g.is_floating_point() else g
        for k, g in current.items()
    }
    return FedEmaBlend(arrays=blended, mu=mu, lam=lam, divergence=divergence)
