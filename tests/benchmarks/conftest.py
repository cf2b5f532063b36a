"""The benchmark scripts are not a package: load them as modules by path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, file: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / file)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quality() -> ModuleType:
    return _load("quality_bench", "quality.py")


@pytest.fixture(scope="module")
def throughput() -> ModuleType:
    return _load("throughput_bench", "throughput.py")


@pytest.fixture(scope="module")
def overhead() -> ModuleType:
    return _load("overhead_bench", "overhead.py")


@pytest.fixture(scope="module")
def scale() -> ModuleType:
    return _load("scale_bench", "scale.py")


@pytest.fixture(scope="module")
def levers() -> ModuleType:
    return _load("levers_bench", "levers.py")
