"""The pretext benchmark's --quick smoke version measures a task and a combination."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_pretext_benchmark_quick(tmp_path: Path) -> None:
    combo = "relative_slice_position,modality_puzzle:0.5"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "pretext.py"), "--quick",
         "--tasks", "relative_slice_position", "--combos", combo, "--seeds", "0",
         "--out-dir", str(tmp_path / "results"), "--work-dir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((tmp_path / "results" / "pretext_quick.json").read_text())
    assert [r["pretext"] for r in doc["rows"]] == ["scratch", "relative_slice_position", combo]
    for row in doc["rows"][1:]:
        assert row["seconds_per_step"] > 0
        assert 0.0 <= row["downstream"]["dice_mean"] <= 1.0
        assert row["dice_minus_scratch_points"] is not None
        assert len(row["paired_points"]) == 1  # one seed: its Dice minus scratch's
    assert doc["best_by_dice"] in ("relative_slice_position", combo)
    assert "| relative_slice_position |" in (tmp_path / "results" / "pretext_quick.md").read_text()
    assert (tmp_path / "results" / "pretext_quick.png").stat().st_size > 3000
