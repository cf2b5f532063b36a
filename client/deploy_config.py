"""A site's deployment config (``site.toml``): its data, state, key, limits, approved code.

Deployment only and never sent anywhere: the paths and ``[limits]`` reach Flower's
``node_config`` (``client/site_config.py``) on this machine, the key and CA are used by
the local SuperNode, and ``approved_apps`` lists the app bundles (by sha256) the site's
task runner will execute (``client/task_runner.py``). Relative paths are relative to the
file's folder.
"""

from __future__ import annotations

from pathlib import Path

import tomli_w
from pydantic import Field, field_validator

from shared.config import FrozenModel, SiteLimits
from shared.flower_cli import check_superlink_address
from shared.run_file import read_toml_model

SITE_CONFIG_FILE = "site.toml"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class SiteServerSettings(FrozenModel):
    """How this site reaches the coordinator's SuperLink (it only ever connects out)."""

    address: str = Field(default="", description="host:port from the coordinator; empty = not yet known.")
    ca_cert: Path = Field(default=Path("ca.crt"), description="The consortium CA (from the coordinator).")

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        return check_superlink_address(value) if value else value


class SiteKeySettings(FrozenModel):
    """The site's SuperNode authentication key (the public key sits beside it as .pub)."""

    private_key: Path = Path("keys/site.key")


class SiteDaemonSettings(FrozenModel):
    """The local SuperNode process."""

    runtime_port: int = Field(default=9094, gt=0, lt=65536,
                              description="Local-only port of the SuperNode's runtime API "
                              "(127.0.0.1); distinct per SuperNode on one host.")
    log_file: Path = Path("logs/site.log")
    max_retries: int | None = Field(default=None, ge=0,
                                    description="Reconnection attempts before giving up "
                                    "(none = forever, what a service wants).")
    max_wait_time_s: float | None = Field(default=None, gt=0,
                                          description="Give up reconnecting after this long.")
    check_data_at_start: bool = Field(
        default=True,
        description="Open the data folder (as `fedmm site check` does, with the run file's "
        "settings, else the defaults) before connecting, and say once how many studies are "
        "usable, or that none is and where the problem list is; it also warms the cache.")
    activation_retry_s: float = Field(
        default=120.0, ge=0,
        description="Keep retrying this long when the SuperLink refuses to activate the site: "
        "right after a crash it still sees the old connection for about 60 s.")


class ApprovedApp(FrozenModel):
    """One app bundle this site agreed to run, named by its sha256 (``fedmm site approve``)."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the app bundle (hex).")
    note: str = Field(default="", max_length=500, description="What it is, who approved it, when.")


class SiteDeployConfig(FrozenModel):
    """Everything ``fedmm site check|stats|start`` needs (``site.toml``)."""

    name: str = Field(pattern=NAME_PATTERN, description="This site's name (local logs, key comment).")
    data_dir: Path = Field(description="The site's data folder, as training reads it.")
    state_dir: Path = Field(default=Path("state"),
                            description="Heads, optimizer, site-local norm, released statistics, "
                            "data cache, Flower's installed app (kept across restarts).")
    run_file: Path | None = Field(
        default=None, description="The coordinator's RUN.toml, so `site check` and `site stats "
        "--dry-run` use the run's data and privacy settings (training always uses what the "
        "server sends).")
    share_templates: bool = Field(
        default=False, description="Consent to send learnt BrainMVP templates (average images "
        "of this site's patients) when a run sets masked_modality_reconstruction."
        "share_templates; off: such a run fails here with a clear error.")
    limits: SiteLimits = Field(
        default=SiteLimits(), description="The most any run may ask of this site (privacy "
        "budget, k, batch size, volume size); a run asking more is refused here.")
    approved_apps: tuple[ApprovedApp, ...] = Field(
        default=(), description="App bundles this site runs; any other is refused before a line "
        "of it executes. `fedmm site approve` adds one.")
    server: SiteServerSettings = SiteServerSettings()
    keys: SiteKeySettings = SiteKeySettings()
    daemon: SiteDaemonSettings = SiteDaemonSettings()

    @property
    def approved_hashes(self) -> frozenset[str]:
        return frozenset(a.sha256 for a in self.approved_apps)

    @property
    def superexec_secret(self) -> Path:
        """The secret the SuperNode and fedmm's task executor share (Runtime API auth)."""
        return self.state_dir / "superexec.secret"

    def resolved(self, base: Path) -> SiteDeployConfig:
        """A copy whose relative paths are made absolute against ``base``."""
        def fix(p: Path) -> Path:
            p = p.expanduser()
            return p if p.is_absolute() else (base / p).resolve()
        return self.model_copy(update={
            "data_dir": fix(self.data_dir),
            "state_dir": fix(self.state_dir),
            "run_file": fix(self.run_file) if self.run_file is not None else None,
            "server": self.server.model_copy(update={"ca_cert": fix(self.server.ca_cert)}),
            "keys": SiteKeySettings(private_key=fix(self.keys.private_key)),
            "daemon": self.daemon.model_copy(update={"log_file": fix(self.daemon.log_file)}),
        })


def load_site_config(path: Path) -> SiteDeployConfig:
    """Read ``site.toml`` and resolve its relative paths against its folder.

    Raises:
        ConfigError: missing file, invalid TOML or an invalid setting (each named).
    """
    cfg = read_toml_model(path, SiteDeployConfig, kind="Site config",
                          example="the site.toml written by `fedmm site init --name NAME "
                          "--data DIR --out DIR`")
    return cfg.resolved(path.resolve().parent)


def write_site_config(cfg: SiteDeployConfig, path: Path) -> Path:
    """Write ``site.toml`` with a header saying what it is."""
    doc = cfg.model_dump(mode="json", exclude_none=True)
    header = ("# fedmm site config: `fedmm site check|stats|approve|start --config this-file`.\n"
              "# Relative paths are relative to this file's folder. Nothing in this file is "
              "sent to the\n# coordinator; keys/site.key must stay on this machine. [limits] are "
              "this site's own:\n# a run that asks for more is refused here. approved_apps: the "
              "only app bundles\n# this site runs (`fedmm site approve`).\n\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + tomli_w.dumps(doc))
    return path
