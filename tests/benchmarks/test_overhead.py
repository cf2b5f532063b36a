"""benchmarks/overhead.py: the phase breakdown and figures from a run's marks, and a tiny real run."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
import torch

from simulations import benchmark_provenance

SIM = {"started": 0.0, "data_ready": 5.0, "sites_checked": 7.0, "superlink_ready": 8.0,
       "run_finished": 60.0, "superlink_stopped": 61.0, "report_done": 65.0}
SERVER = {"serverapp_started": 14.0, "sites_connected": 14.5, "statistics_done": 20.0,
          "rounds_done": 50.0, "export_done": 51.0}
METRICS = {"meta": {"timeline": SERVER}, "rounds": [
    {"round": r, "seconds": 15.0, "phases": {"send_and_wait": 12.0},
     "train": {"sites": {"1": {"seconds": 10.0}, "2": {"seconds": 12.0}}},
     "evaluate": {"sites": {"1": {"seconds": 1.0}}}} for r in (1, 2)]}


def test_phases_and_figures_follow_the_marks(overhead: ModuleType) -> None:
    result = type("R", (), {"timeline": SIM, "seconds": 65.0})()
    plain = [{"round": 1, "seconds": 20.0}, {"round": 2, "seconds": 30.0}]
    summary = overhead.summarize(result, METRICS, plain)
    phases = summary["phases_seconds"]
    assert phases["superlink_start"] == 1.0
    assert phases["submit_app_build_and_serverapp_start"] == 6.0
    assert phases["round0_statistics_and_ray_actors"] == 5.5
    assert phases["rounds"] == 30.0 and phases["between_rounds"] == 0.0
    assert phases["export"] == 1.0 and phases["run_end_and_status"] == 9.0
    assert summary["per_round_overhead"] == pytest.approx((15 - 12) / 12)
    assert summary["per_round_overhead_vs_plain"] == pytest.approx(15 / 25 - 1)
    assert summary["fixed_seconds"] == pytest.approx(61 - 7 - 30)


def test_missing_marks_leave_their_phases_empty(overhead: ModuleType) -> None:
    phases = overhead.phase_breakdown({"started": 0.0}, {}, rounds_seconds=3.0)
    assert phases["data_preparation"] is None and phases["rounds"] == 3.0


def test_fedavg_weights_by_examples(overhead: ModuleType) -> None:
    a, b = {"w": torch.zeros(2)}, {"w": torch.ones(2)}
    assert torch.equal(overhead.fedavg([(a, 1.0), (b, 3.0)])["w"], torch.full((2,), 0.75))
    with pytest.raises(ValueError, match="no site trained"):
        overhead.fedavg([(a, 0.0)])


def test_a_busy_machine_is_refused(overhead: ModuleType, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(benchmark_provenance.os, "getloadavg", lambda: (99.0, 0.0, 0.0))
    assert overhead.main(["--out", str(tmp_path / "o.json")]) == 3
    assert not (tmp_path / "o.json").exists()


@pytest.mark.slow
@pytest.mark.integration
def test_a_tiny_run_writes_every_field(overhead: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "overhead.json"
    code = overhead.main(["--sites", "2", "--rounds", "2", "--local-steps", "2", "--subjects", "4",
                          "--spacing-mm", "4", "--crop-size", "16", "--batch-size", "2",
                          "--allow-busy", "--work", str(tmp_path / "work"), "--out", str(out)])
    assert code == 0
    doc = json.loads(out.read_text())
    for key in ("command", "machine", "code_commit", "load_before", "per_round_overhead",
                "fixed_seconds", "phases_seconds", "flower_rounds", "plain_rounds"):
        assert doc[key] is not None, key
    assert doc["command"].startswith("python benchmarks/overhead.py --sites 2")
    assert all(v is not None for v in doc["phases_seconds"].values())
    assert len(doc["plain_rounds"]) == len(doc["flower_rounds"]) == 2
