"""Head entries a run aggregates across sites: opt-in, on top of the global encoder.

Every pretext head stays on its site unless its task config lists an entry in
``shared_head_entries()`` (today only BrainMVP's templates, behind
``masked_modality_reconstruction.share_templates``). Shared entries travel next to the
encoder's in the same ArrayRecord, keyed ``head.<task>.<entry>``, and every strategy
aggregates them like encoder entries. Client, server and the outgoing guard all derive
the keys from the run config with these functions, so they always agree.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from shared.config import RunConfig
from shared.model.encoder import MultiModalEncoder
from shared.pretext.base import TaskContext
from shared.pretext.mixture import PretextMixture
from shared.site_errors import SiteErrorCode, SiteRefusal

HEAD_PREFIX = "head."


def shared_head_keys(cfg: RunConfig) -> dict[str, tuple[str, str]]:
    """Wire key -> (task name, head entry) for every head entry this run aggregates."""
    return {f"{HEAD_PREFIX}{c.name}.{entry}": (c.name, entry)
            for c in cfg.pretext for entry in c.shared_head_entries()}


def head_arrays(cfg: RunConfig, heads: nn.ModuleDict) -> dict[str, torch.Tensor]:
    """The shared head entries of ``heads`` (a site's trained heads), wire-keyed, on CPU."""
    out = {}
    for key, (task, entry) in shared_head_keys(cfg).items():
        out[key] = heads[task].state_dict()[entry].detach().cpu()
    return out


def initial_head_arrays(cfg: RunConfig, encoder: MultiModalEncoder) -> dict[str, torch.Tensor]:
    """The shared entries' starting values: the heads every site builds from ``cfg.seed``."""
    if not shared_head_keys(cfg):
        return {}
    context = TaskContext(modalities=cfg.data.modalities, crop_size=cfg.data.crop_size)
    mixture = PretextMixture.build(cfg.pretext, context=context, encoder=encoder, seed=cfg.seed)
    return head_arrays(cfg, mixture.heads)


def load_head_arrays(cfg: RunConfig, heads: nn.ModuleDict,
                     arrays: Mapping[str, torch.Tensor]) -> None:
    """Copy the received shared entries into a site's heads.

    Raises:
        ValueError: an entry the run shares is missing or has another shape (a config
            mismatch between server and site); the message names it.
    """
    for key, (task, entry) in shared_head_keys(cfg).items():
        if key not in arrays:
            raise ValueError(f"the global model has no {key!r}, but this run shares it "
                             f"({task}.{entry}); server and site run different configs")
        target = heads[task].state_dict()[entry]
        if tuple(arrays[key].shape) != tuple(target.shape):
            raise ValueError(f"{key!r} has shape {tuple(arrays[key].shape)}, this site's head "
                             f"expects {tuple(target.shape)}")
        with torch.no_grad():
            target.copy_(arrays[key].to(target.device, target.dtype))


def split_arrays(arrays: Mapping[str, torch.Tensor]
                 ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(encoder entries, shared head entries)`` of a wire-keyed global model."""
    encoder = {k: v for k, v in arrays.items() if not k.startswith(HEAD_PREFIX)}
    heads = {k: v for k, v in arrays.items() if k.startswith(HEAD_PREFIX)}
    return encoder, heads


class ConsentRefusal(SiteRefusal, PermissionError):
    """The run asks a site to send something the site has not agreed to send."""

    code = SiteErrorCode.CONSENT


def require_consent(cfg: RunConfig, *, site_allows: bool) -> None:
    """Refuse a run that shares head entries this site has not agreed to send.

    Raises:
        ConsentRefusal: (a PermissionError) with what the run asks, why it matters and how
            to allow it.
    """
    keys = shared_head_keys(cfg)
    if keys and not site_allows:
        raise ConsentRefusal(
            f"This run asks sites to send {sorted(keys)} (masked_modality_reconstruction."
            "share_templates = true). A learnt template is an average image of this site's "
            "patients, so this site does not send it without consent. To allow it, set "
            "share_templates = true in site.toml (node config share-templates=true); or ask "
            "the coordinator to run with share_templates = false (the default).",
            setting="pretext.masked_modality_reconstruction.share_templates",
        )
