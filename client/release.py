"""Round 0 on a site: the anonymized SiteStats it releases (and `site stats --dry-run`).

A site releases its statistics once: the release is kept in its state folder and sent
again, unchanged, to every later request for the same data and settings. Every new
release is booked in the site's privacy ledger first and refused when it would take the
site past its own lifetime budget (``[limits].max_epsilon_total``). Fresh noise on
every request would let anyone who asks often enough average the noise away; keeping one
release also makes ``fedmm site stats --dry-run`` show exactly what round 0 will send.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from client.privacy import anonymize_site_stats
from client.privacy_ledger import record_release, spent_epsilon
from client.session import open_dataset
from client.site_limits import check_epsilon_budget
from client.stats import summarize_site
from shared.config import RunConfig, SiteConfig
from shared.stats_schema import SiteStats

RELEASE_FILE = "released_site_stats.json"


def _fingerprint(cfg: RunConfig, study_ids: list[str]) -> str:
    doc = {"data": cfg.data.model_dump(mode="json"), "privacy": cfg.privacy.model_dump(mode="json"),
           "studies": sorted(study_ids)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def release_site_stats(
    cfg: RunConfig, site: SiteConfig, *, rng: np.random.Generator | None = None
) -> SiteStats:
    """This site's anonymized statistics over all its valid studies (computed once, kept).

    Args:
        rng: noise source for a new release; by default fresh OS entropy.
    """
    dataset = open_dataset(cfg, site)
    fingerprint = _fingerprint(cfg, [*dataset.train_ids, *dataset.eval_ids])
    path = site.state_dir / RELEASE_FILE
    kept = _read_release(path)
    if kept is not None and kept[0] == fingerprint:
        return kept[1]
    spent = spent_epsilon(site.state_dir, unreadable_cost=cfg.privacy.epsilon)
    check_epsilon_budget(epsilon=cfg.privacy.epsilon, spent=spent, limits=site.limits)
    studies = [*dataset.study_stats("train"), *dataset.study_stats("eval")]
    summary = summarize_site(studies, modalities=cfg.data.modalities)
    release = anonymize_site_stats(
        summary,
        num_studies=len(studies),
        privacy=cfg.privacy,
        rng=rng if rng is not None else np.random.default_rng(),
    )
    # Booked before it is kept (and so before it can leave): a crash in between costs
    # budget, never hides it.
    record_release(site.state_dir, epsilon=cfg.privacy.epsilon, mechanism="laplace",
                   fingerprint=fingerprint)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"fingerprint": fingerprint, "release": json.loads(release.to_json())}))
    tmp.replace(path)
    return release


def _read_release(path: Path) -> tuple[str, SiteStats] | None:
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text())
        return str(doc["fingerprint"]), SiteStats.model_validate(doc["release"])
    except (ValueError, KeyError):
        return None  # unreadable: make a new release
