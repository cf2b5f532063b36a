"""simulations/superlink.py: a private SuperLink on 127.0.0.1 that starts fast and always stops."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from simulations.superlink import TASK_POLL_INTERVAL_S, SimulationSuperLink


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_its_superexec_polls_for_runs_quickly_and_everything_stops(tmp_path: Path) -> None:
    link = SimulationSuperLink(flwr_home=tmp_path / "flwr", log_file=tmp_path / "superlink.log")
    with link:
        assert link.proc is not None
        leader = link.proc.pid
        deadline, superexec = time.monotonic() + 30, None
        while superexec is None and time.monotonic() < deadline:
            superexec = next((pid for pid in _children(leader)
                              if b"superexec" in Path(f"/proc/{pid}/cmdline").read_bytes()), None)
            time.sleep(0.1)
        assert superexec is not None, "flower-superlink started no SuperExec"
        assert _environ(superexec)["FLWR_SUPEREXEC_TASK_POLL_INTERVAL"] == str(TASK_POLL_INTERVAL_S)
    assert not Path(f"/proc/{leader}").exists() or b"zombie" in Path(f"/proc/{leader}/status").read_bytes()
    assert not Path(f"/proc/{superexec}").exists()
