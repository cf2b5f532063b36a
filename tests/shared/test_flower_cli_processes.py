"""Flower's processes are found and stopped by the private FLWR_HOME they inherit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from shared.flower_cli import processes_using_home, stop_processes_using_home


def test_nested_finds_every_home_under_the_folder_and_only_those(tmp_path: Path) -> None:
    def sleeper(home: Path) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                env={**os.environ, "FLWR_HOME": str(home)}, start_new_session=True)
    inside = sleeper(tmp_path / "run" / ".flwr")
    outside = sleeper(tmp_path.parent / f"{tmp_path.name}-other" / ".flwr")
    try:
        assert processes_using_home(tmp_path) == []  # not that home itself
        assert processes_using_home(tmp_path, nested=True) == [inside.pid]
        assert stop_processes_using_home(tmp_path, nested=True, grace_s=2.0) == [inside.pid]
        assert inside.wait(timeout=10) != 0 and outside.poll() is None
        assert processes_using_home(tmp_path, nested=True) == []
    finally:
        for proc in (inside, outside):
            proc.kill()
            proc.wait(timeout=10)
