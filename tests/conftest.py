"""Test-wide settings: keep Flower, matplotlib and fedmm caches inside pytest's tmp dirs."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_caches(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("caches")
    os.environ.setdefault("FEDMM_CACHE", str(root / "fedmm"))
    os.environ.setdefault("MPLCONFIGDIR", str(root / "mpl"))
    os.environ["FLWR_TELEMETRY_ENABLED"] = "0"
