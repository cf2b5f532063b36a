"""Running a child in the foreground: output to log and console, SIGTERM passed on, no leftovers."""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
from pathlib import Path

from client.foreground import StopRequest, run_foreground
from shared.flower_cli import processes_using_home

PY = sys.executable


def run(code: str, tmp_path: Path, stop: StopRequest) -> tuple[int, list[str], str, str]:
    home = tmp_path / "flwr-home"
    env = {**os.environ, "FLWR_HOME": str(home)}
    log, console = io.StringIO(), io.StringIO()
    rc, last = run_foreground([PY, "-c", code], env=env, cwd=tmp_path, log=log, console=console,
                              stop=stop, flwr_home=home)
    return rc, last, log.getvalue(), console.getvalue()


def test_exit_code_and_output_reach_log_and_console(tmp_path: Path) -> None:
    rc, last, log, console = run("print('hello'); raise SystemExit(3)", tmp_path, StopRequest())
    assert rc == 3 and last == ["hello"] and log == console == "hello\n"


def test_a_stop_request_terminates_the_child_and_what_it_started(tmp_path: Path) -> None:
    # The child starts a helper in a session of its own, as Flower's SuperNode does.
    code = ("import subprocess, sys, time; "
            f"subprocess.Popen([{PY!r}, '-c', 'import time; time.sleep(120)'], start_new_session=True); "
            "print('up', flush=True); time.sleep(120)")
    stop = StopRequest()
    timer = threading.Timer(3.0, stop._handle, args=(signal.SIGTERM, None))
    timer.start()
    try:
        rc, last, _, _ = run(code, tmp_path, stop)
    finally:
        timer.cancel()
    assert stop.requested and rc == -signal.SIGTERM and "up" in last
    assert processes_using_home(tmp_path / "flwr-home") == []
