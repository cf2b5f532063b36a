"""The test suite's sweep of Flower processes left running finds them by FLWR_HOME and stops them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.flower_leftovers import processes_with_home_under, stop_processes_under


def test_a_process_with_a_home_under_the_folder_is_found_and_stopped(tmp_path: Path) -> None:
    def sleeper(home: Path) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                env={**os.environ, "FLWR_HOME": str(home)}, start_new_session=True)
    inside = sleeper(tmp_path / "run" / ".flwr")
    outside = sleeper(tmp_path.parent / f"{tmp_path.name}-other" / ".flwr")
    try:
        assert processes_with_home_under(tmp_path) == [inside.pid]
        assert stop_processes_under(tmp_path, grace_s=2.0) == [inside.pid]
        assert inside.wait(timeout=10) != 0 and outside.poll() is None
        assert processes_with_home_under(tmp_path) == []
    finally:
        for proc in (inside, outside):
            proc.kill()
            proc.wait(timeout=10)
