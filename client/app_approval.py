"""Which app bundles a site runs: ``fedmm site approve`` records their sha256 in site.toml.

Fed-BioMed's model: a node runs a training plan only after its operator approved that
exact code by hash. Here the code is Flower's app bundle (FAB); its sha256 identifies it
(``shared/app_bundle.py``). By default a site approves the bundle of the fedmm release it
installed itself, whose hash it prints so hospital IT can compare it with the
coordinator's ``fedmm server app-hash``; ``--hash`` approves a hash announced by the
coordinator after that comparison, ``--fab`` a bundle file. The site's task runner reads
the list for every task (``client/task_runner.py``).
"""

from __future__ import annotations

import datetime as dt
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from client.deploy_config import ApprovedApp, SiteDeployConfig, write_site_config
from shared.app_bundle import app_dir, app_sha256, bundle_sha256
from shared.config import ConfigError, format_validation_error
from shared.run_file import read_toml_file

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _fedmm_version() -> str:
    try:
        return version("fedmm")
    except PackageNotFoundError:
        return "unknown version"


def installed_app() -> ApprovedApp:
    """The bundle of the fedmm installed here, as an approval with a note saying so."""
    folder = app_dir()
    today = dt.date.today().isoformat()
    return ApprovedApp(sha256=app_sha256(folder),
                       note=f"fedmm {_fedmm_version()} installed at {folder} (approved {today})")


def approval_for(*, sha256: str | None = None, fab: Path | None = None, note: str = "") -> ApprovedApp:
    """An approval of a given hash, of a bundle file, or (neither) of the installed fedmm.

    Raises:
        ValueError: both given, a malformed hash, or an unreadable bundle file.
    """
    if sha256 is not None and fab is not None:
        raise ValueError("Expected --hash or --fab (or neither, for the installed fedmm), got both.")
    today = dt.date.today().isoformat()
    if sha256 is not None:
        digest = sha256.strip().lower()
        if not _HEX64.match(digest):
            raise ValueError(f"Expected a sha256 of 64 hex digits (as `fedmm server app-hash` "
                             f"prints it), got {sha256!r}.")
        return ApprovedApp(sha256=digest, note=note or f"hash approved {today}")
    if fab is not None:
        try:
            content = fab.read_bytes()
        except OSError as err:
            raise ValueError(f"Cannot read the app bundle {fab}: {err}. Fix: pass the .fab file "
                             "the coordinator sent.") from err
        return ApprovedApp(sha256=bundle_sha256(content), note=note or f"{fab.name} (approved {today})")
    app = installed_app()
    return app if not note else app.model_copy(update={"note": note})


def _read_unresolved(path: Path) -> SiteDeployConfig:
    """site.toml as written (relative paths kept), so rewriting it changes only the approvals."""
    from pydantic import ValidationError

    raw = read_toml_file(path, kind="Site config", example="the site.toml `fedmm site init` wrote")
    try:
        return SiteDeployConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source=str(path), model=SiteDeployConfig)) from err


def approve(path: Path, app: ApprovedApp) -> bool:
    """Add ``app`` to site.toml's approved_apps; False when it was already approved."""
    cfg = _read_unresolved(path)
    if app.sha256 in cfg.approved_hashes:
        return False
    write_site_config(cfg.model_copy(update={"approved_apps": (*cfg.approved_apps, app)}), path)
    return True


def revoke(path: Path, sha256: str) -> bool:
    """Remove an approval from site.toml; False when it was not there."""
    cfg = _read_unresolved(path)
    kept = tuple(a for a in cfg.approved_apps if a.sha256 != sha256.strip().lower())
    if len(kept) == len(cfg.approved_apps):
        return False
    write_site_config(cfg.model_copy(update={"approved_apps": kept}), path)
    return True
