"""The quality benchmark's --quick smoke version runs end to end and writes its outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# federated_iid is left out: it is the federated run on other folders (iid_site_folders has
# its own tests in tests/simulations/test_baselines.py) and a Flower run per seed costs CI time.
VARIANTS = ("scratch", "local_only", "federated", "centralized", "cyclic")


def test_quality_quick(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "quality.py"), "--quick",
         "--out-dir", str(tmp_path / "results"), "--work-dir", str(tmp_path / "work"),
         "--variants", ",".join(VARIANTS), "--tasks", "segmentation"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((tmp_path / "results" / "quality_quick.json").read_text())
    assert doc["command"].startswith("python benchmarks/quality.py --quick")
    assert doc["role"] == "validation" and doc["evaluated_sites"] == {
        "in_federation": "site-2", "unseen_site": "site-4"}
    assert len(doc["code_version"]) == 64 and doc["seeds"] == [0, 1]
    assert set(doc["results"]["in_federation"]["0.5"]) == set(VARIANTS)
    assert set(doc["results"]["unseen_site"]["0.5"]) == {"scratch", "local_only", "federated"}
    for setting in ("in_federation", "unseen_site"):
        for fraction in ("0.5", "1.0"):
            for entry in doc["results"][setting][fraction].values():
                assert 0.0 <= entry["dice_mean"] <= 1.0 and "acc_mean" not in entry
            d = doc["paired_dice_points"][setting][fraction]["federated_minus_scratch"]
            assert len(d["per_seed"]) == 2 and d["ci95"][0] <= d["mean"] <= d["ci95"][1]
    assert set(doc["paired_dice_points"]["in_federation"]["0.5"]) >= {
        "federated_minus_local_only", "centralized_minus_scratch", "cyclic_minus_scratch"}
    assert isinstance(doc["goals"]["all_goals_hold"], bool)
    assert doc["budget_check"]["holds"] in (True, False)
    # every fine-tuning stopped early or ran out of steps, and said which step it kept
    assert all(j["best_step"] in (2, 4) and 2 <= j["steps_run"] <= 4 for j in doc["jobs"])
    # the control ran through its own path: a cyclic export
    work = tmp_path / "work"
    assert (work / "cyclic-seed1" / "site-1").is_dir()
    # the evaluated sites' test studies were in no pretraining
    pretrain = {p.name for p in (work / "sites" / "pretrain" / "site-2").iterdir()}
    test = {p.name for p in (work / "sites" / "eval-validation" / "site-2-test").iterdir()}
    assert test and not pretrain & test
    assert (tmp_path / "results" / "quality_quick.png").stat().st_size > 5000
    assert "## Goals at 50% labels, in_federation" in (tmp_path / "results" / "quality_quick.md").read_text()
    assert (work / "federated-seed0" / "report.html").exists()
    # the pretrainings' preprocessed studies are in the machine's shared cache, not per run
    assert not list(work.glob("*seed*/**/samples"))
    assert list((Path(os.environ["FEDMM_CACHE"]) / "preprocessed").glob("*.pt"))
    # a second run reuses every pretrained encoder (same code, same settings) and classifies
    again = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "quality.py"), "--quick", "--tasks", "classification",
         "--out-dir", str(tmp_path / "results"), "--work-dir", str(work), "--variants", "scratch,federated",
         "--name", "again"], capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    second = json.loads((tmp_path / "results" / "again.json").read_text())
    assert second["pretraining_reused"] == {"0": ["federated"], "1": ["federated"]}
    for entry in second["results"]["unseen_site"]["0.5"].values():
        assert {"acc_mean", "balanced_acc_mean"} <= set(entry) and "dice_mean" not in entry
