"""Before the federation starts: open every virtual site's data once and say which have nothing usable.

Each site is opened exactly as its ClientApp will open it (same folder, settings, seed and
cache folder), so the work is not repeated in round 0: the sites then find their studies
validated and preprocessed. A site with no usable study is said once, here, with the
number of problems and where their list is; the run goes on only if the other sites can
still make the quorum the server asks of every round.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from client.data.site_problems import PROBLEMS_FILE, SiteDataSummary, summarize_site_data
from shared.config import ConfigError, RunConfig, SimulatedSitesConfig

__all__ = ["DATA_CHECK_FILE", "SiteDataCheck", "check_sites", "read_idle_sites", "require_quorum"]

#: In the run folder: what the check found per site (names and counts; it stays local).
DATA_CHECK_FILE = "data_check.json"


@dataclass(frozen=True)
class SiteDataCheck(SiteDataSummary):
    """One virtual site's data, as its ClientApp will see it."""

    index: int = 0
    folder: str = ""

    def line(self, name: str | None = None) -> str:
        return super().line(name or f"site-{self.index} ({self.folder})")


def _check_one(cfg: RunConfig, sites: SimulatedSitesConfig, index: int) -> SiteDataCheck:
    data_dir, state_dir = sites.site(index)
    summary = summarize_site_data(data_dir, data=cfg.data, cache_dir=state_dir / "cache",
                                  seed=cfg.seed, problems_dir=state_dir,
                                  samples_dir=sites.samples_dir)
    return SiteDataCheck(index=index, folder=sites.site_dirs[index], **asdict(summary))


def check_sites(cfg: RunConfig, *, out_dir: Path) -> list[SiteDataCheck]:
    """Open every site of ``cfg.sites`` once; write ``out_dir/data_check.json``.

    Raises:
        ValueError: ``cfg.sites`` is not set (only ``simulate`` runs this).
        Exception: what is not a data error (disk, memory, a bug) propagates.
    """
    sites = cfg.sites
    if not isinstance(sites, SimulatedSitesConfig):
        raise ValueError(f"expected the simulated sites in cfg.sites, got {type(sites).__name__}.")
    data_log = logging.getLogger("client.data")
    level = data_log.level
    data_log.setLevel(logging.ERROR)  # each problem goes to the site's list, not the console
    try:
        checks = [_check_one(cfg, sites, k) for k in range(len(sites.site_dirs))]
    finally:
        data_log.setLevel(level)
    (out_dir / DATA_CHECK_FILE).write_text(json.dumps([asdict(c) for c in checks], indent=2))
    return checks


def require_quorum(checks: list[SiteDataCheck], cfg: RunConfig) -> None:
    """Stop before the federation when the sites with data cannot make a round's quorum.

    Raises:
        ConfigError: naming the idle sites, what the quorum needs and what to change.
    """
    needed = max(1, math.ceil(cfg.federation.quorum * len(checks)))
    usable = [c for c in checks if not c.idle]
    if len(usable) >= needed:
        return
    idle = ", ".join(f"site-{c.index} ({c.folder})" for c in checks if c.idle)
    raise ConfigError(
        f"Expected at least {needed} of {len(checks)} sites with usable data (federation.quorum = "
        f"{cfg.federation.quorum:g} of the sites must reply in every round), got {len(usable)}: "
        f"{idle} have none. Fix their data (see each site's {PROBLEMS_FILE} under the run's "
        f"sites/ folder), leave them out, or lower federation.quorum.")


def read_idle_sites(out_dir: Path) -> list[str]:
    """The lines of the sites that had no usable study, from the run folder (empty if none)."""
    try:
        raw = json.loads((out_dir / DATA_CHECK_FILE).read_text())
        checks = [SiteDataCheck(**entry) for entry in raw]
    except (OSError, ValueError, TypeError):
        return []
    return [c.line() for c in checks if c.idle]
