"""A site's round functions without Flower: training, evaluation, state, statistics release."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from client.evaluate import evaluate_round
from client.privacy_ledger import LEDGER_FILE, read_ledger, record_release, spent_epsilon
from client.release import release_site_stats
from client.site_limits import SiteLimitRefusal
from client.site_state import SiteState
from client.train import train_round
from shared.config import RunConfig, SiteConfig, SiteLimits
from shared.model import build_encoder, global_state
from shared.stats_schema import SiteStats
from tests.client.site_data import SPACING, write_site

CFG = RunConfig.model_validate({
    "model": {"preset": "cpu-small"},
    "data": {"crop_size": 16, "spacing_mm": SPACING, "batch_size": 2, "hist_bins": 8},
    "train": {"local_steps": 2, "eval_batches": 1},
    "privacy": {"min_studies": 3},
})


@pytest.fixture
def site(tmp_path: Path) -> SiteConfig:
    write_site(tmp_path / "data", num_studies=6)
    return SiteConfig(data_dir=tmp_path / "data", state_dir=tmp_path / "state")


def initial_arrays() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return global_state(build_encoder("cpu-small"), site_local_norm=True)


def test_train_round_returns_only_global_entries_and_keeps_state(site: SiteConfig) -> None:
    arrays = initial_arrays()
    result = train_round(cfg=CFG, site=site, global_arrays=arrays, pool=None, server_round=1)
    assert result.arrays.keys() == arrays.keys()
    assert any(not torch.equal(result.arrays[k], arrays[k]) for k in arrays)
    assert result.metrics["num-examples"] > 0 and np.isfinite(result.metrics["train-loss"])
    state = SiteState.load(site.state_dir)
    assert state.rounds == [1] and "plane_intersection" in state.heads
    assert state.encoder_local and state.optimizer is not None


def test_site_state_survives_a_restart(site: SiteConfig) -> None:
    arrays = initial_arrays()
    train_round(cfg=CFG, site=site, global_arrays=arrays, pool=None, server_round=1)
    head_after_1 = SiteState.load(site.state_dir).heads["plane_intersection"]
    # a "restarted" site: a fresh process would read the same file
    train_round(cfg=CFG, site=site, global_arrays=arrays, pool=None, server_round=2)
    state = SiteState.load(site.state_dir)
    assert state.rounds == [1, 2]
    assert any(not torch.equal(head_after_1[k], state.heads["plane_intersection"][k])
               for k in head_after_1)


def test_evaluate_is_deterministic_and_changes_nothing(site: SiteConfig) -> None:
    arrays = initial_arrays()
    a = evaluate_round(cfg=CFG, site=site, global_arrays=arrays, pool=None)
    b = evaluate_round(cfg=CFG, site=site, global_arrays=arrays, pool=None)
    assert a.arrays == {} and a.metrics["eval-loss"] == b.metrics["eval-loss"]
    assert not (site.state_dir / "site_state.pt").exists()


def test_release_is_computed_once_and_reused(site: SiteConfig) -> None:
    first = release_site_stats(CFG, site, rng=np.random.default_rng(1))
    again = release_site_stats(CFG, site, rng=np.random.default_rng(2))
    assert first == again and not first.withheld
    assert set(first.modalities) == {"t1", "t1ce", "t2", "flair"}
    # booked once in the site's ledger: a release re-sent unchanged costs nothing more
    entries, bad = read_ledger(site.state_dir)
    assert [e.epsilon for e in entries] == [CFG.privacy.epsilon] and bad == 0
    assert (site.state_dir / LEDGER_FILE).stat().st_mode & 0o777 == 0o600


def test_a_new_release_past_the_lifetime_budget_is_refused(site: SiteConfig) -> None:
    limited = site.model_copy(update={"limits": SiteLimits(max_epsilon_per_release=8.0,
                                                           max_epsilon_total=12.0, min_k=3)})
    release_site_stats(CFG, limited)  # spends 8 of 12
    other = CFG.model_copy(update={"data": CFG.data.model_copy(update={"hist_bins": 16})})
    with pytest.raises(SiteLimitRefusal, match="spent 8 of its lifetime budget 12"):
        release_site_stats(other, limited)  # new statistics would spend 8 more
    assert [e.epsilon for e in read_ledger(site.state_dir)[0]] == [CFG.privacy.epsilon]
    assert release_site_stats(CFG, limited) is not None  # the kept release is still re-sent


def test_an_unreadable_ledger_line_still_counts_as_spent(site: SiteConfig) -> None:
    record_release(site.state_dir, epsilon=3.0, mechanism="laplace", fingerprint="a")
    with (site.state_dir / LEDGER_FILE).open("a") as fh:
        fh.write("{torn line\n")
    assert spent_epsilon(site.state_dir, unreadable_cost=1.0) == 6.0
    assert spent_epsilon(site.state_dir, unreadable_cost=5.0) == 8.0


def test_site_stats_dry_run_prints_exactly_the_payload(site: SiteConfig, tmp_path: Path) -> None:
    cfg_file = tmp_path / "run.json"
    cfg_file.write_text(CFG.to_json())
    exe = Path(sys.executable).parent / "fedmm"
    proc = subprocess.run([str(exe), "site", "stats", "--data", str(site.data_dir), "--dry-run",
                           "--run-config", str(cfg_file), "--state", str(site.state_dir)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout[: proc.stdout.index("\n}\n") + 2])
    assert list(payload) == ["site-stats"] and list(payload["site-stats"]) == ["json"]
    printed = SiteStats.from_json(payload["site-stats"]["json"])
    assert printed == release_site_stats(CFG, site)  # what round 0 will send
    assert "BraTS" not in proc.stdout and str(site.data_dir) not in proc.stdout


def test_site_stats_without_dry_run_explains(site: SiteConfig) -> None:
    exe = Path(sys.executable).parent / "fedmm"
    proc = subprocess.run([str(exe), "site", "stats", "--data", str(site.data_dir)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--dry-run" in proc.stderr


def test_shared_templates_need_the_sites_consent(site: SiteConfig) -> None:
    from shared.pretext.shared_heads import initial_head_arrays

    key = "head.masked_modality_reconstruction.templates"
    cfg = CFG.model_copy(update={"pretext": RunConfig.model_validate({"pretext": {
        "name": "masked_modality_reconstruction", "template_size": 8,
        "share_templates": True}}).pretext})
    torch.manual_seed(0)
    encoder = build_encoder("cpu-small")
    arrays = {**global_state(encoder, site_local_norm=True), **initial_head_arrays(cfg, encoder)}
    with pytest.raises(PermissionError, match=r"site\.toml"):
        train_round(cfg=cfg, site=site, global_arrays=arrays, pool=None, server_round=1)
    consenting = site.model_copy(update={"share_templates": True})
    result = train_round(cfg=cfg, site=consenting, global_arrays=arrays, pool=None, server_round=1)
    assert result.arrays.keys() == arrays.keys()
    assert not torch.equal(result.arrays[key], arrays[key])  # the templates trained
    evaluate_round(cfg=cfg, site=consenting, global_arrays=result.arrays, pool=None)
