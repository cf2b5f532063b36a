"""Resolves a site's own settings, from Flower's node_config (deployment) or a simulation.

A deployed site daemon (``fedmm site start``) passes the site's folders, its consent to
share templates and its ``[limits]`` from site.toml in the node config; they are the
site's, never the coordinator's. Errors name the key and the fix but never echo values
(they may be paths).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from shared.config import RunConfig, SiteConfig, SiteLimits

DATA_DIR_KEY = "data-dir"
STATE_DIR_KEY = "state-dir"
PARTITION_KEY = "partition-id"
SHARE_TEMPLATES_KEY = "share-templates"
#: Node-config key of each SiteLimits field: ``limit-<field with dashes>``.
LIMIT_KEYS = {name: "limit-" + name.replace("_", "-") for name in SiteLimits.model_fields}


def limits_node_config(limits: SiteLimits) -> dict[str, float | int]:
    """The node-config entries that carry ``limits`` to the ClientApp."""
    return {LIMIT_KEYS[name]: value for name, value in limits.model_dump().items()}


def resolve_site(node_config: Mapping[str, Any], cfg: RunConfig) -> SiteConfig:
    """Return the SiteConfig of the node running this ClientApp.

    A deployed site has ``data-dir``, ``state-dir``, optionally ``share-templates`` and its
    limits (``limit-*``; a deployed site without them gets the default limits, never
    none); a simulated site only has Flower's ``partition-id`` and finds its folders
    through ``cfg.sites`` (set by ``simulate``), without limits.

    Raises:
        ValueError: neither form is present, or a value is invalid; the message names the
            key, not its value.
    """
    if DATA_DIR_KEY in node_config:
        if STATE_DIR_KEY not in node_config:
            raise ValueError(
                f"node config has {DATA_DIR_KEY!r} but no {STATE_DIR_KEY!r}; give the site a "
                "folder for its local state, e.g. --node-config "
                "'data-dir=\"/data/brats\" state-dir=\"/var/lib/fedmm\"'."
            )
        limits = {name: node_config[key] for name, key in LIMIT_KEYS.items() if key in node_config}
        try:
            return SiteConfig(
                data_dir=Path(str(node_config[DATA_DIR_KEY])),
                state_dir=Path(str(node_config[STATE_DIR_KEY])),
                share_templates=_flag(node_config.get(SHARE_TEMPLATES_KEY, False)),
                limits=SiteLimits.model_validate(limits),
            )
        except ValidationError as err:
            keys = sorted({LIMIT_KEYS.get(str(e["loc"][-1]), str(e["loc"][0])) for e in err.errors()})
            raise ValueError(f"invalid node config entries {keys}: expected the values "
                             "`fedmm site start` writes from site.toml; fix site.toml and restart "
                             "the site daemon.") from err
    if PARTITION_KEY in node_config and cfg.sites is not None:
        data_dir, state_dir = cfg.sites.site(int(node_config[PARTITION_KEY]))
        # A simulation's sites are the researcher's own folders: what the run config
        # asks to share, they share.
        return SiteConfig(data_dir=data_dir, state_dir=state_dir, share_templates=True,
                          samples_dir=cfg.sites.samples_dir)
    raise ValueError(
        f"Cannot tell where this site's data is: the node config has no {DATA_DIR_KEY!r} "
        f"(keys: {sorted(node_config)}), and the run config has no simulated 'sites' section. "
        "Start the site with `fedmm site start` (or flower-supernode --node-config "
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
    raise ValueError(f"node config {SHARE_TEMPLATES_KEY} is not a boolean; "
                     "use share-templates=true or share-templates=false")
