"""The architecture holds: import direction between packages, and no Flower in the core."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("shared", "client", "server", "simulations")
ALLOWED = {
    "shared": set(),
    "client": {"shared"},
    "server": {"shared"},
    "simulations": {"shared", "client", "server"},
}
# The Flower edges: everything else is plain Python/torch and testable without a federation.
# The ClientApp and its mods, the site's task executor and verifying runner (Flower's
# Runtime API), the ServerApp, and the app bundle's builder (Flower's own, so its hash is
# the one `flwr run` submits).
FLOWER_EDGES = {
    "client/app.py", "client/guard.py", "client/error_mod.py",
    "client/task_executor.py", "client/task_runner.py", "client/update_clipping.py",
    "server/app.py", "server/protocol.py", "server/strategy.py", "server/update_privacy.py",
    "shared/app_bundle.py",
}


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", PACKAGES)
def test_import_direction(package: str) -> None:
    bad = {}
    for path in modules(package):
        ours = imported_roots(path) & set(PACKAGES) - {package}
        if ours - ALLOWED[package]:
            bad[str(path.relative_to(ROOT))] = sorted(ours - ALLOWED[package])
    assert not bad, f"{package} may import only {sorted(ALLOWED[package])}; found {bad}"


@pytest.mark.parametrize("package", ["shared", "client", "server"])
def test_core_does_not_import_flower(package: str) -> None:
    offenders = [
        str(p.relative_to(ROOT)) for p in modules(package)
        if "flwr" in imported_roots(p) and str(p.relative_to(ROOT)) not in FLOWER_EDGES
    ]
    assert not offenders, f"only the Flower edges {sorted(FLOWER_EDGES)} may import flwr: {offenders}"


def test_no_grab_bag_modules() -> None:
    names = {p.name for pkg in PACKAGES for p in modules(pkg)}
    assert not names & {"utils.py", "helpers.py", "misc.py", "common.py"}
