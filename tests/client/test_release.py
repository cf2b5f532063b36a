"""Round 0 at a site: one draw per data and statistical settings, re-sent from the ledger,
within the site's lifetime budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from client import session
from client.privacy_ledger import LEDGER_FILE, read_ledger
from client.release import make_release, release_site_stats
from client.site_limits import SiteLimitRefusal
from shared.config import RunConfig, SiteConfig, SiteLimits
from shared.stats_schema import SiteStats
from tests.client.site_data import SPACING, write_site, write_study
from tests.fedmm_cli import run_fedmm

#: A simulated site (no limits) with a large epsilon, so that six patients release.
CFG = RunConfig.model_validate({
    "model": {"preset": "cpu-small"},
    "data": {"crop_size": 16, "spacing_mm": SPACING, "batch_size": 2, "hist_bins": 8},
    "privacy": {"min_studies": 3, "epsilon": 50.0},
})


def variant(cfg: RunConfig, **sections: dict) -> RunConfig:
    return RunConfig.model_validate({**json.loads(cfg.to_json()), **{
        k: {**json.loads(cfg.to_json())[k], **v} for k, v in sections.items()}})


@pytest.fixture
def site(tmp_path: Path) -> SiteConfig:
    write_site(tmp_path / "data", num_studies=6)
    return SiteConfig(data_dir=tmp_path / "data", state_dir=tmp_path / "state")


def test_release_is_drawn_once_and_resent_whatever_the_other_settings(site: SiteConfig) -> None:
    first = make_release(CFG, site)
    assert first.fresh and not first.stats.withheld
    assert set(first.stats.modalities) == {"t1", "t1ce", "t2", "flair"}
    for other in (variant(CFG, data={"batch_size": 3}), variant(CFG, data={"crop_size": 8}),
                  variant(CFG, privacy={"min_studies": 2}), variant(CFG, train={"lr": 0.1}),
                  variant(CFG, privacy={"epsilon": 20.0}), CFG):
        again = make_release(other, site)
        assert not again.fresh and again.entry == first.entry
        assert again.stats.modalities == first.stats.modalities  # the same draw
        assert again.stats.epsilon == 50.0  # the kept release reports what it cost
    ledger = read_ledger(site.state_dir)
    assert [e.epsilon for e in ledger.entries] == [50.0] and ledger.unreadable == 0
    assert (site.state_dir / LEDGER_FILE).stat().st_mode & 0o777 == 0o600


def test_alternating_run_configs_cannot_average_the_noise_away(site: SiteConfig) -> None:
    """Issue 13 alternated min_studies 5/6 and got 1993 distinct releases of 2000."""
    configs = [variant(CFG, privacy={"min_studies": k}) for k in (2, 3)]
    releases = [release_site_stats(configs[i % 2], site) for i in range(40)]
    assert len({r.to_json() for r in releases}) <= 2
    assert len({r.modalities["t1"].mean for r in releases if "t1" in r.modalities}) == 1
    assert len(read_ledger(site.state_dir).entries) == 1


@pytest.mark.parametrize("change", [
    {"data": {"hist_bins": 16}}, {"data": {"modalities": ["t1", "t2"]}},
    {"data": {"percentile_high": 99.0}}, {"data": {"spacing_mm": 2.5}},
], ids=["bins", "modalities", "percentiles", "spacing"])
def test_statistical_settings_draw_a_new_release(site: SiteConfig, change: dict) -> None:
    make_release(CFG, site)
    assert make_release(variant(CFG, **change), site).fresh
    assert [e.epsilon for e in read_ledger(site.state_dir).entries] == [50.0, 50.0]
    assert not make_release(CFG, site).fresh  # the first is still kept and re-sent


def test_a_new_patient_draws_a_new_release(site: SiteConfig) -> None:
    make_release(CFG, site)
    write_study(site.data_dir, 6)
    session._cached_dataset.cache_clear()  # a deployed site reads its folder in each message
    assert make_release(CFG, site).fresh
    assert len(read_ledger(site.state_dir).entries) == 2


def test_a_new_release_past_the_lifetime_budget_is_refused(site: SiteConfig) -> None:
    cfg = variant(CFG, privacy={"epsilon": 8.0})
    limited = site.model_copy(update={"limits": SiteLimits(max_epsilon_per_release=8.0,
                                                           max_epsilon_total=12.0, min_k=3)})
    first = make_release(cfg, limited)
    assert (first.spent, first.budget, first.left) == (8.0, 12.0, 4.0)
    with pytest.raises(SiteLimitRefusal, match="spent 8 of its lifetime budget 12"):
        make_release(variant(cfg, data={"hist_bins": 16}), limited)
    assert [e.epsilon for e in read_ledger(site.state_dir).entries] == [8.0]
    assert not make_release(cfg, limited).fresh  # the kept release is still re-sent


def test_the_ledger_records_what_a_release_covered(site: SiteConfig) -> None:
    entry = make_release(CFG, site).entry
    assert entry.mechanism.startswith("OpenDP ") and entry.draw is not None
    assert entry.covers["unit"] == "patient" and entry.covers["hist_bins"] == 8
    assert entry.covers["modalities"] == sorted(CFG.data.modalities)
    assert sum(entry.covers["field_epsilons"].values()) == pytest.approx(50.0)
    text = (site.state_dir / LEDGER_FILE).read_text()
    assert "BraTS" not in text and str(site.data_dir) not in text


def test_site_stats_dry_run_prints_exactly_the_payload(site: SiteConfig, tmp_path: Path) -> None:
    cfg_file = tmp_path / "run.json"
    cfg_file.write_text(CFG.to_json())
    proc = run_fedmm("site", "stats", "--data", str(site.data_dir), "--dry-run",
                 "--run-config", str(cfg_file), "--state", str(site.state_dir))
    assert proc.exit_code == 0, proc.stderr
    payload = json.loads(proc.stdout[: proc.stdout.index("\n}\n") + 2])
    assert list(payload) == ["site-stats"] and list(payload["site-stats"]) == ["json"]
    printed = SiteStats.from_json(payload["site-stats"]["json"])
    assert printed == release_site_stats(CFG, site)  # what round 0 will send
    assert "BraTS" not in proc.stdout and str(site.data_dir) not in proc.stdout
    err = " ".join(proc.stderr.split())
    assert "epsilon 50-differentially private per patient, drawn now" in err
    assert "epsilon 50 spent in total" in err


def test_site_stats_without_dry_run_explains(site: SiteConfig) -> None:
    proc = run_fedmm("site", "stats", "--data", str(site.data_dir))
    assert proc.exit_code == 2 and "--dry-run" in proc.stderr
