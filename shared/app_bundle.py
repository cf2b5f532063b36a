"""fedmm's Flower app bundle (FAB): the folder it is built from and the sha256 that names it.

``flwr run`` builds the bundle from the app folder with Flower's own builder (fixed file
dates, sorted entries), so the same code gives the same bytes on every machine: the
coordinator's ``fedmm server app-hash`` and a site's ``fedmm site approve`` print the same
sha256 for the same fedmm release, which hospital IT compares before approving it. The
bundle holds only ``pyproject.toml`` and the ``client``, ``server`` and ``shared`` packages
(``[tool.flwr.app] fab-include``), so documentation or stray files do not change it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from flwr.cli.build import build_fab_from_disk


class AppBundleError(RuntimeError):
    """The app folder cannot be found or built; the message says what to do."""


def app_dir() -> Path:
    """The Flower app folder of this installation: the checkout holding fedmm's pyproject.toml."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file():
        raise AppBundleError(
            f"Expected fedmm's pyproject.toml in {root} (the Flower app folder), found none. "
            "Install fedmm from a checkout with `pip install -e .` so the app can be built."
        )
    return root


def build_bundle(app: Path) -> bytes:
    """The app bundle ``flwr run`` submits for the app folder ``app``.

    Raises:
        AppBundleError: the folder is not a buildable Flower app.
    """
    if not (app / "pyproject.toml").is_file():
        raise AppBundleError(f"Expected a Flower app folder with a pyproject.toml, got {app}. "
                             "Fix: pass the folder of a fedmm checkout.")
    try:
        return build_fab_from_disk(app)
    except (ValueError, OSError) as err:
        raise AppBundleError(f"Cannot build the app bundle of {app}: {err}") from err


def bundle_sha256(content: bytes) -> str:
    """The sha256 (hex) that names a bundle: of its bytes, as Flower computes it."""
    return hashlib.sha256(content).hexdigest()


def app_sha256(app: Path | None = None) -> str:
    """The sha256 of the bundle built from ``app`` (default: this installation)."""
    return bundle_sha256(build_bundle(app if app is not None else app_dir()))
