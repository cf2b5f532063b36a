"""Resolves where a site's data and state live, from Flower's node_config or a simulation."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from shared.config import RunConfig, SiteConfig

DATA_DIR_KEY = "data-dir"
STATE_DIR_KEY = "state-dir"
PARTITION_KEY = "partition-id"
SHARE_TEMPLATES_KEY = "share-templates"


def resolve_site(node_config: Mapping[str, Any], cfg: RunConfig) -> SiteConfig:
    """Return the SiteConfig of the node running this ClientApp.

    A deployed site daemon passes ``data-dir``, ``state-dir`` and optionally
    ``share-templates`` (its consent to send BrainMVP templates) in its node config; a
    simulated site only has Flower's ``partition-id`` and finds its folders through
    ``cfg.sites`` (set by ``simulate``).

    Raises:
        ValueError: neither form is present, or a value is invalid; the message says which.
    """
    if DATA_DIR_KEY in node_config:
        if STATE_DIR_KEY not in node_config:
            raise ValueError(
                f"node config has {DATA_DIR_KEY!r} but no {STATE_DIR_KEY!r}; give the site a "
                "folder for its local state, e.g. --node-config "
                "'data-dir=\"/data/brats\" state-dir=\"/var/lib/fedmm\"'."
            )
        try:
            return SiteConfig(
                data_dir=Path(str(node_config[DATA_DIR_KEY])),
                state_dir=Path(str(node_config[STATE_DIR_KEY])),
                share_templates=_flag(node_config.get(SHARE_TEMPLATES_KEY, False)),
            )
        except ValidationError as err:
            raise ValueError(f"invalid node config {dict(node_config)}: {err}") from err
    if PARTITION_KEY in node_config and cfg.sites is not None:
        data_dir, state_dir = cfg.sites.site(int(node_config[PARTITION_KEY]))
        # A simulation's sites are the researcher's own folders: what the run config
        # asks to share, they share.
        return SiteConfig(data_dir=data_dir, state_dir=state_dir, share_templates=True)
    raise ValueError(
        f"Cannot tell where this site's data is: node config {dict(node_config)} has no "
        f"{DATA_DIR_KEY!r}, and the run config has no simulated 'sites' section. Start the "
        "site with `fedmm site start` (or flower-supernode --node-config "
        "'data-dir=\"...\" state-dir=\"...\"'), or run a simulation through `simulate`."
    )


def _flag(value: Any) -> bool:
    """A node-config boolean: TOML true/false or the strings "true"/"false"."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", ""):
        return False
    raise ValueError(f"node config {SHARE_TEMPLATES_KEY}={value!r} is not a boolean; "
                     "use share-templates=true or share-templates=false")
