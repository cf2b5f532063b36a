"""The quality benchmark's --quick smoke version runs end to end and writes its outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
VARIANTS = ("scratch", "local_only", "federated", "centralized", "federated_iid", "cyclic")


def test_quality_quick(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "quality.py"), "--quick",
         "--out-dir", str(tmp_path / "results"), "--work-dir", str(tmp_path / "work"),
         "--variants", ",".join(VARIANTS)],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((tmp_path / "results" / "quality_quick.json").read_text())
    assert set(doc) >= {"config", "machine", "results", "command"}
    for row in doc["results"].values():
        assert set(row) == set(VARIANTS)
        for entry in row.values():
            assert {"dice_mean", "dice_std", "acc_mean", "acc_std"} <= set(entry)
            assert 0.0 <= entry["dice_mean"] <= 1.0
    dims = doc["effective_dimensions"]
    assert set(dims) == set(VARIANTS)
    assert set(doc["paired_dice_points_vs_federated_at_low_label_fraction"]) == set(VARIANTS) - {
        "federated"}
    assert "reaches_90pct_of_centralized_gain" in doc["goals_at_low_label_fraction"]
    # the controls ran through their own paths: a Flower run on IID shards, a cyclic export
    assert (tmp_path / "work" / "federated_iid-seed0" / "encoder.safetensors").exists()
    assert (tmp_path / "work" / "iid-seed0" / "data" / "site-0").is_dir()
    assert (tmp_path / "work" / "cyclic-seed0" / "site-1").is_dir()
    assert all(0.0 < e["mean"] <= 128 and e["mean"] <= e["width"] for e in dims.values())
    assert (tmp_path / "results" / "quality_quick.png").stat().st_size > 5000
    assert (tmp_path / "work" / "federated-seed0" / "report.html").exists()
