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


def resolve_site(node_config: Mapping[str, Any], cfg: RunConfig) -> SiteConfig:
    """Return the SiteConfig of the node running this ClientApp.

    A deployed site daemon passes ``data-dir`` and ``state-dir`` in its node config; a
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
            )
        except ValidationError as err:
            raise ValueError(f"invalid node config {dict(node_config)}: {err}") from err
    if PARTITION_KEY in node_config and cfg.sites is not None:
        data_dir, state_dir = cfg.sites.site(int(node_config[PARTITION_KEY]))
        return SiteConfig(data_dir=data_dir, state_dir=state_dir)
    raise ValueError(
        f"Cannot tell where this site's data is: node config {dict(node_config)} has no "
        f"{DATA_DIR_KEY!r}, and the run config has no simulated 'sites' section. Start the "
        "site with `fedmm site start` (or flower-supernode --node-config "
        "'data-dir=\"...\" state-dir=\"...\"'), or run a simulation through `simulate`."
    )
