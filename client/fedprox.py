"""FedProx's proximal term, added to a site's local loss (torch only).

Li, Sahu, Zaheer, Sanjabi, Talwalkar, Smith: "Federated Optimization in Heterogeneous
Networks", MLSys 2020. Each local step minimises ``loss + mu/2 * sum ||w - w_g||^2`` over
the global encoder parameters, ``w_g`` being the weights received this round; the server
runs FedAvg (Flower's FedProx strategy).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from shared.model import global_parameter_names
from shared.model.site_local import ENCODER_PREFIX


def global_parameters(encoder: nn.Module, *, site_local_norm: bool) -> dict[str, nn.Parameter]:
    """The encoder's trainable parameters that the server aggregates, by wire key.

    Buffers and site-local entries are excluded: the proximal term pulls only weights that
    the optimizer moves and the server averages.
    """
    names = set(global_parameter_names(encoder, site_local_norm=site_local_norm))
    return {
        f"{ENCODER_PREFIX}{k}": p for k, p in encoder.named_parameters()
        if f"{ENCODER_PREFIX}{k}" in names and p.requires_grad
    }


def proximal_term(
    params: Mapping[str, torch.Tensor], anchor: Mapping[str, torch.Tensor], *, mu: float
) -> torch.Tensor:
    """``mu/2 * sum_k ||params[k] - anchor[k]||^2`` (a scalar that carries gradients).

    Args:
        params: the live parameters ``w``.
        anchor: ``w_g``, detached, with the same keys and shapes.
        mu: the proximal weight (``federation.strategy.proximal_mu``), >= 0.
    """
    if mu < 0:
        raise ValueError(f"FedProx mu must be >= 0, got {mu}")
    if params.keys() != anchor.keys():
        raise ValueError(
            f"FedProx: parameters and anchor differ in keys: only in params "
            f"{sorted(params.keys() - anchor.keys())[:5]}, only in anchor "
            f"{sorted(anchor.keys() - params.keys())[:5]}"
        )
    if not params:
        return torch.zeros(())
    total = sum(((p - anchor[k]) ** 2).sum() for k, p in params.items())
    return (mu / 2.0) * torch.as_tensor(total)


class ProximalTerm:
    """``mu/2 ||w - w_g||^2`` with ``w_g`` captured at construction.

    Build it right after loading the global weights and before the first local step;
    calling it returns the term for the parameters' current values.

    Args:
        params: the live parameters ``w`` (e.g. :func:`global_parameters`).
        mu: the proximal weight, >= 0.
    """

    def __init__(self, params: Mapping[str, torch.Tensor], *, mu: float) -> None:
        if mu < 0:
            raise ValueError(f"FedProx mu must be >= 0, got {mu}")
        self.mu = mu
        self.params = dict(params)
        self.anchor = {k: p.detach().clone() for k, p in self.params.items()}

    def __call__(self) -> torch.Tensor:
        return proximal_term(self.params, self.anchor, mu=self.mu)
