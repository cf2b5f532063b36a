"""fedmm's Flower app bundle (FAB): the folder it is built from and the sha256 that names it.

``flwr run`` builds the bundle from the app folder with Flower's own builder (fixed file
dates, sorted entries), so the same code gives the same bytes on every machine: the
coordinator's ``fedmm server app-hash`` and a site's ``fedmm site approve`` print the same
sha256 for the same fedmm release, which hospital IT compares before approving it. The
bundle holds only ``pyproject.toml`` and the ``client``, ``server`` and ``shared`` packages
(``[tool.flwr.app] fab-include``), so documentation or stray files do not change it.

Flower's builder lists every file under the app folder before it filters them, which in a
checkout means walking ``.venv`` (about 7 s on two cores, paid by every ``flwr run``,
``fedmm site approve`` and ``fedmm server app-hash``). fedmm hands the builder only the
folders its ``fab-include`` patterns can match (``bundle_sources``), and ``flwr run`` builds
from a copy of just those files (``stage_sources``); Flower's own filters then choose the
same files, so the bundle's bytes do not change (tested against ``build_fab_from_disk``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import tomllib
from pathlib import Path

from flwr.cli.build import build_fab_from_files
from flwr.cli.utils import collect_files

#: Files Flower reads beside the included ones: the app's configuration and its ignore rules.
_ALWAYS = ("pyproject.toml", ".gitignore")
_GLOB = set("*?[")


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


def build_bundle(app: Path, sources: dict[str, Path] | None = None) -> bytes:
    """The app bundle ``flwr run`` submits for the app folder ``app``, built by Flower from
    ``sources`` (default: ``bundle_sources(app)``).

    Raises:
        AppBundleError: the folder is not a buildable Flower app.
    """
    try:
        return build_fab_from_files(sources if sources is not None else bundle_sources(app))[0]
    except (ValueError, OSError) as err:
        raise AppBundleError(f"Cannot build the app bundle of {app}: {err}") from err


def _include_roots(app: Path) -> list[str] | None:
    """The top folders the app's ``fab-include`` patterns are anchored in (``/client/**/*.py``
    -> ``client``); None when a pattern could match anywhere (or there are none)."""
    try:
        config = tomllib.loads((app / "pyproject.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None  # Flower's builder says what is wrong with it
    patterns = config.get("tool", {}).get("flwr", {}).get("app", {}).get("fab-include")
    if not isinstance(patterns, list) or not patterns:
        return None
    roots = []
    for pattern in patterns:
        head = str(pattern).removeprefix("/").split("/", 1)
        if not str(pattern).startswith("/") or len(head) < 2 or _GLOB & set(head[0]):
            return None
        roots.append(head[0])
    return sorted(set(roots))


def bundle_sources(app: Path) -> dict[str, Path]:
    """The files of ``app`` that Flower's builder needs to see: those under the folders its
    ``fab-include`` patterns are anchored in, plus ``pyproject.toml`` and ``.gitignore``
    (relative POSIX path -> file). Without anchored patterns, every file (Flower's walk).

    Raises:
        AppBundleError: ``app`` has no pyproject.toml.
    """
    if not (app / "pyproject.toml").is_file():
        raise AppBundleError(f"Expected a Flower app folder with a pyproject.toml, got {app}. "
                             "Fix: pass the folder of a fedmm checkout.")
    app = app.expanduser().resolve()
    roots = _include_roots(app)
    if roots is None:
        return collect_files(app)
    files = {name: app / name for name in _ALWAYS if (app / name).is_file()}
    for root in roots:
        if (app / root).is_dir() and not (app / root).is_symlink():
            files.update({f"{root}/{rel}": path for rel, path in collect_files(app / root).items()})
    return files


def stage_sources(app: Path, dest: Path) -> Path:
    """Copy ``bundle_sources(app)`` into a folder under ``dest`` named by the bundle's sha256
    and return it: ``flwr run`` of that folder submits the same bundle as of ``app``, without
    walking the rest of ``app``. An existing copy of the same bundle is reused. The copy is
    private to this user (folders 0700, files 0600), whatever the umask."""
    sources = bundle_sources(app)
    staged = dest / bundle_sha256(build_bundle(app, sources))
    if staged.is_dir():
        return staged
    dest.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".staging-", dir=dest))  # 0700
    for rel, path in sources.items():
        (scratch / rel).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copyfile(path, scratch / rel)
        (scratch / rel).chmod(0o600)  # private, like the rest of a coordinator's state
    try:
        os.replace(scratch, staged)
    except OSError:  # another run staged the same bundle first
        shutil.rmtree(scratch, ignore_errors=True)
    return staged


def bundle_sha256(content: bytes) -> str:
    """The sha256 (hex) that names a bundle: of its bytes, as Flower computes it."""
    return hashlib.sha256(content).hexdigest()


def app_sha256(app: Path | None = None) -> str:
    """The sha256 of the bundle built from ``app`` (default: this installation)."""
    return bundle_sha256(build_bundle(app if app is not None else app_dir()))
