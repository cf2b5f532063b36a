"""Test-wide settings: keep Flower, matplotlib and fedmm caches inside pytest's tmp dirs."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# Rich sizes module-level consoles from COLUMNS when they are created, and CI has no terminal
# (80 columns): messages that tests search would be folded mid-word. Set before any test module
# imports a CLI.
os.environ["COLUMNS"] = "400"

# Under pytest-xdist (`make test`), the workers share the cores: each worker's torch gets its
# share of them instead of one thread per core each (oversubscribed threads spin and wait).
if workers := int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0")):
    import torch

    torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // workers))


# Ray starts its workers (the simulated sites) at niceness 15, so next to the other test
# workers a simulation's sites would get a few percent of a core and its rounds would crawl.
# Tests run them at the priority of everything else (RayConfig reads RAY_worker_niceness).
os.environ.setdefault("RAY_worker_niceness", "0")


@pytest.fixture(scope="session", autouse=True)
def _isolated_caches(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    root = tmp_path_factory.mktemp("caches")
    os.environ.setdefault("FEDMM_CACHE", str(root / "fedmm"))
    os.environ.setdefault("MPLCONFIGDIR", str(root / "mpl"))
    os.environ["FLWR_TELEMETRY_ENABLED"] = "0"
    yield
    # No Flower process a test started outlives the session, even one whose test timed out.
    from shared.flower_cli import stop_processes_using_home

    stop_processes_using_home(tmp_path_factory.getbasetemp().resolve(), nested=True, grace_s=5.0)
