"""The one place that decides which parameters stay on a site and which are aggregated."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

ENCODER_PREFIX = "encoder."

# Normalization layers whose affine parameters are per-site "domain denormalization"
# (FedBN, Li et al. ICLR 2021), the feature-level counterpart of AdaDN (docs/methods.md).
_NORM_TYPES = (nn.GroupNorm, nn.modules.batchnorm._NormBase, nn.LayerNorm)


def global_parameter_names(encoder: nn.Module, *, site_local_norm: bool) -> list[str]:
    """Names (``encoder.``-prefixed) of the encoder entries the server aggregates.

    Everything not listed here (heads, templates, and, with ``site_local_norm``, every
    normalization layer's parameters and buffers) never leaves the site. Client and server
    both call this function, so they always agree.
    """
    local: set[str] = set()
    if site_local_norm:
        for mod_name, module in encoder.named_modules():
            if isinstance(module, _NORM_TYPES):
                prefix = f"{mod_name}." if mod_name else ""
                local.update(f"{prefix}{k}" for k in module.state_dict())
    return [f"{ENCODER_PREFIX}{k}" for k in encoder.state_dict() if k not in local]


def global_state(
    encoder: nn.Module, *, site_local_norm: bool
) -> dict[str, torch.Tensor]:
    """The aggregatable part of the encoder's state, keyed as on the wire, each tensor
    contiguous on the CPU (whatever memory format the site trains in)."""
    names = set(global_parameter_names(encoder, site_local_norm=site_local_norm))
    return {
        f"{ENCODER_PREFIX}{k}": v.detach().cpu().contiguous()
        for k, v in encoder.state_dict().items()
        if f"{ENCODER_PREFIX}{k}" in names
    }


def load_global_state(
    encoder: nn.Module, state: Mapping[str, torch.Tensor], *, site_local_norm: bool
) -> None:
    """Load wire-keyed global parameters into ``encoder``, leaving site-local ones alone.

    Raises:
        ValueError: the keys differ from the ones this encoder aggregates (a config or
            version mismatch between server and site); the message lists the difference.
    """
    expected = set(global_parameter_names(encoder, site_local_norm=site_local_norm))
    got = set(state)
    if got != expected:
        missing, extra = sorted(expected - got), sorted(got - expected)
        raise ValueError(
            "The global encoder does not match this site's encoder: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {extra[:5]}{'...' if len(extra) > 5 else ''}. "
            "Check that server and site run the same fedmm version and model config."
        )
    stripped = {k[len(ENCODER_PREFIX):]: v for k, v in state.items()}
    encoder.load_state_dict(stripped, strict=False)
