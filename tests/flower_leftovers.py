"""Flower processes a test left running: found by the private ``FLWR_HOME`` they inherit.

Every federation a test starts gets a ``FLWR_HOME`` under pytest's temporary folder, and
Flower's helpers run in sessions of their own, so a test killed at its timeout (or a
crashed `simulate`) can leave a SuperLink, its SuperExec and Ray behind. They are found by
that folder and stopped: after a test's own timeout, and for every test at the end of the
session, so no server outlives the tests.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def processes_with_home_under(root: Path) -> list[int]:
    """Ids of live processes whose ``FLWR_HOME`` lies under ``root`` (Linux /proc)."""
    home = f"FLWR_HOME={root.resolve()}".encode()
    found = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and any(var == home or var.startswith(home + b"/") for var in env):
            found.append(int(entry.name))
    return sorted(found)


def stop_processes_under(root: Path, *, grace_s: float = 5.0) -> list[int]:
    """SIGTERM every process whose ``FLWR_HOME`` lies under ``root``, SIGKILL what is left
    after ``grace_s``; return the ids found."""
    found = processes_with_home_under(root)
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        alive = processes_with_home_under(root)
        for pid in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while alive and time.monotonic() < deadline:
            time.sleep(0.2)
            alive = processes_with_home_under(root)
        if not alive:
            break
    return found
