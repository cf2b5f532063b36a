"""benchmarks/scale.py: its fit, its memory measure and options, and a tiny real run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest


def test_linear_fit_recovers_a_line_and_says_how_well(scale: ModuleType) -> None:
    fit = scale.linear_fit([4, 8, 16, 32], [3.0 + 0.5 * n for n in (4, 8, 16, 32)])
    assert fit["slope"] == pytest.approx(0.5) and fit["intercept"] == pytest.approx(3.0)
    assert fit["r2"] == pytest.approx(1.0)
    assert scale.linear_fit([4, 8, 16, 32], [1, 2, 4, 16])["r2"] < 0.99  # faster than linear
    assert scale.linear_fit([4], [1.0]) == {"slope": None, "intercept": None, "r2": None}


def test_tree_memory_counts_children(scale: ModuleType) -> None:
    alone = scale.tree_rss_mb(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "import time; b = bytearray(200 * 2**20); "
                              "b[::4096] = b'x' * len(b[::4096]); time.sleep(30)"])
    try:
        deadline = 50
        while scale.tree_rss_mb(os.getpid()) < alone + 150 and deadline:
            subprocess.run(["sleep", "0.1"])
            deadline -= 1
        assert scale.tree_rss_mb(os.getpid()) >= alone + 150
    finally:
        child.kill()
        child.wait()


def test_round_figures_read_time_aggregation_and_bytes(scale: ModuleType) -> None:
    def entry(seconds: float, aggregate: float, sites: int) -> dict[str, object]:
        return {"seconds": seconds, "phases": {"screen_and_aggregate": aggregate},
                "train": {"sites": {str(i): {} for i in range(sites)},
                          "transfer": {"bytes_sent_per_site": 1000.0}}}

    figures = scale.round_figures([entry(4.0, 0.1, 3), entry(6.0, 0.3, 3)])
    assert figures["seconds_per_round"] == 5.0 and figures["round_seconds"] == [4.0, 6.0]
    assert figures["aggregate_seconds_per_round"] == pytest.approx(0.2)
    assert figures["bytes_sent_per_site"] == 1000.0 and figures["bytes_received_per_round"] == 3000.0
    bare = scale.round_figures([{"seconds": 2.0, "train": {"sites": {}}}])
    assert bare["aggregate_seconds_per_round"] is None and bare["bytes_received_per_round"] is None


def test_site_counts_are_parsed_and_checked(scale: ModuleType) -> None:
    assert scale.parse_args(["--sites", "16,4,8"]).site_counts == [4, 8, 16]
    with pytest.raises(SystemExit):
        scale.parse_args(["--sites", "four"])


@pytest.mark.slow
@pytest.mark.integration
def test_a_tiny_scale_run_writes_every_entry(scale: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    assert scale.main(["--sites", "2,3", "--rounds", "2", "--allow-busy", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [e["sites"] for e in doc["entries"]] == [2, 3]
    for entry in doc["entries"]:
        assert entry["seconds_per_round"] > 0 and entry["peak_rss_mb"] > 500  # torch + Ray
        assert entry["aggregate_seconds_per_round"] > 0
        assert entry["bytes_received_per_round"] == entry["sites"] * entry["bytes_sent_per_site"]
    assert doc["seconds_per_round_fit"]["slope"] is not None and doc["command"]


def test_sampling_runs_while_the_block_runs_and_survives_a_failing_read() -> None:
    import time

    from simulations.periodic_sampler import sampled

    with sampled(lambda: 1.0, interval_s=0.01) as values:
        time.sleep(0.1)
    assert len(values) >= 2 and set(values) == {1.0}

    def broken() -> float:
        raise RuntimeError("no driver")

    with sampled(broken, interval_s=0.01) as none:
        time.sleep(0.03)
    assert none == []
