"""Test-wide settings: keep Flower, matplotlib and fedmm caches inside pytest's tmp dirs."""

from __future__ import annotations

import os

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


@pytest.fixture(scope="session", autouse=True)
def _isolated_caches(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("caches")
    os.environ.setdefault("FEDMM_CACHE", str(root / "fedmm"))
    os.environ.setdefault("MPLCONFIGDIR", str(root / "mpl"))
    os.environ["FLWR_TELEMETRY_ENABLED"] = "0"
