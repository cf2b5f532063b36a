"""Round 0 on a site: the SiteStats it releases (and `site stats --dry-run`), accounted.

A site draws a release once per data and statistical settings (modalities, percentiles,
histogram bins, spacing) and answers every later request for them from its privacy
ledger: the same draw, post-processed with the run's k. Other settings (k, batch size,
crops, even epsilon) never draw fresh noise; a different epsilon gets the kept release,
which reports its own. A new draw is refused when it would take the site past its own
lifetime budget (``[limits].max_epsilon_total``), and is booked (fsync) before it can
leave. Fresh noise on every request would let anyone who asks often enough average it
away; one draw also makes ``fedmm site stats --dry-run`` show exactly what round 0 sends.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client.patient_contributions import bound_contributions, contributions_fingerprint
from client.privacy import draw_release, plan_release, site_stats_from
from client.privacy_ledger import (
    LedgerEntry,
    append_entry,
    ledger_lock,
    new_entry,
    read_ledger,
)
from client.session import open_dataset
from client.site_limits import check_epsilon_budget
from shared.config import DataConfig, RunConfig, SiteConfig
from shared.stats_schema import SiteStats

#: The last payload this site sent (for reports; the ledger is the record).
RELEASE_FILE = "released_site_stats.json"


@dataclass(frozen=True)
class SiteRelease:
    """A release and its accounting (what `site stats --dry-run` prints).

    Attributes:
        stats: exactly what round 0 sends.
        entry: the ledger line whose draw it post-processes.
        fresh: drawn now (True) or re-sent from the ledger (False).
        spent: the site's lifetime epsilon spent, this release included.
        budget: the site's lifetime budget (None: no limits, a simulated site).
    """

    stats: SiteStats
    entry: LedgerEntry
    fresh: bool
    spent: float
    budget: float | None

    @property
    def left(self) -> float | None:
        return None if self.budget is None else max(self.budget - self.spent, 0.0)


def statistical_settings(data: DataConfig) -> dict[str, Any]:
    """The settings a release depends on (besides the data): a change draws a new one."""
    return {"modalities": sorted(data.modalities), "percentile_low": data.percentile_low,
            "percentile_high": data.percentile_high, "hist_bins": data.hist_bins,
            "spacing_mm": data.spacing_mm}


def release_fingerprint(data: DataConfig, contributions_digest: str) -> str:
    """Digest of the statistical settings and of exactly the values a release covers."""
    doc = {"settings": statistical_settings(data), "contributions": contributions_digest}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def make_release(cfg: RunConfig, site: SiteConfig) -> SiteRelease:
    """This site's release over all its valid studies, one row per patient and modality.

    Raises:
        SiteLimitRefusal: a new draw would exceed the site's lifetime budget.
        NoUsableDataRefusal: the site has no usable study.
    """
    dataset = open_dataset(cfg, site)
    columns = bound_contributions(dataset.patient_study_stats(), modalities=cfg.data.modalities,
                                  bins=cfg.data.hist_bins)
    fingerprint = release_fingerprint(cfg.data, contributions_fingerprint(columns))
    budget = site.limits.max_epsilon_total if site.limits is not None else None
    # A line that cannot be read may have cost as much as any release this site allows.
    unreadable_cost = max(cfg.privacy.epsilon, site.limits.max_epsilon_per_release
                          if site.limits is not None else 0.0)
    with ledger_lock(site.state_dir):
        ledger = read_ledger(site.state_dir)
        entry = ledger.find(fingerprint)
        fresh = entry is None
        if entry is None:
            spent = ledger.spent(unreadable_cost=unreadable_cost)
            check_epsilon_budget(epsilon=cfg.privacy.epsilon, spent=spent, limits=site.limits)
            plan = plan_release(modalities=tuple(sorted(cfg.data.modalities)),
                                bins=cfg.data.hist_bins, epsilon=cfg.privacy.epsilon)
            covers = {**statistical_settings(cfg.data), "unit": "patient",
                      "fields": ["count", "mean", "std", "histogram"],
                      "field_epsilons": plan.field_epsilons()}
            entry = append_entry(site.state_dir, new_entry(
                draw=draw_release(columns, plan), fingerprint=fingerprint, covers=covers))
            ledger = read_ledger(site.state_dir)
        spent = ledger.spent(unreadable_cost=unreadable_cost)
    if entry.draw is None:  # find() and new_entry() only return lines with their draw
        raise RuntimeError("a ledger line without its draw cannot be re-sent")
    stats = site_stats_from(entry.draw, min_patients=cfg.privacy.min_studies)
    _write_private(site.state_dir / RELEASE_FILE, json.dumps({"release": json.loads(stats.to_json())}))
    return SiteRelease(stats=stats, entry=entry, fresh=fresh, spent=spent, budget=budget)


def release_site_stats(cfg: RunConfig, site: SiteConfig) -> SiteStats:
    """What round 0 sends: :func:`make_release`'s SiteStats."""
    return make_release(cfg, site).stats


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    tmp.replace(path)
