"""The coordinator's deployment config (``server.toml``): SuperLink address, TLS, state paths.

Deployment only: secrets and key paths live here, never in the RunConfig that travels to
the sites. Relative paths are relative to the folder holding the file, so a coordinator
folder made by ``fedmm server init`` can be moved or mounted into a container as a whole.
"""

from __future__ import annotations

from pathlib import Path

import tomli_w
from pydantic import Field, field_validator

from shared.config import FrozenModel
from shared.flower_cli import check_superlink_address
from shared.run_file import read_toml_model

SERVER_CONFIG_FILE = "server.toml"
#: The name of the coordinator's SuperLink connection in Flower's own config.toml.
CONNECTION = "fedmm"


class SuperLinkSettings(FrozenModel):
    """Where the SuperLink listens and how sites and the coordinator's CLI reach it."""

    host: str = Field(default="0.0.0.0", description="Bind address of the SuperLink's one port.")
    port: int = Field(default=9093, gt=0, lt=65536, description="The one port sites connect to.")
    public_address: str = Field(
        default="localhost:9093", description="host:port the sites put in their site.toml.")
    control_address: str = Field(
        default="127.0.0.1:9093", description="host:port the coordinator's own `flwr` uses.")

    @field_validator("public_address", "control_address")
    @classmethod
    def _address(cls, value: str) -> str:
        return check_superlink_address(value)


class TlsSettings(FrozenModel):
    """The SuperLink's TLS files (made by ``fedmm server init``)."""

    ca_cert: Path = Path("certs/ca.crt")
    server_cert: Path = Path("certs/server.pem")
    server_key: Path = Path("certs/server.key")


class ServerPaths(FrozenModel):
    """Where the coordinator keeps state, logs and run outputs."""

    database: Path = Field(default=Path("state/superlink.db"),
                           description="SuperLink state: registered sites, runs (persistent).")
    flwr_home: Path = Field(default=Path("state/flwr-home"),
                            description="Flower's home: CLI connections, installed app versions.")
    log_file: Path = Field(default=Path("logs/superlink.log"),
                           description="SuperLink log (Flower rotates it).")
    runs_dir: Path = Field(default=Path("runs"),
                           description="Default parent of each run's output folder.")
    sites_file: Path = Field(default=Path("state/sites.json"),
                             description="Names and key fingerprints of registered sites.")


class ServerDeployConfig(FrozenModel):
    """Everything ``fedmm server start|run|register-site|sites`` needs (``server.toml``)."""

    superlink: SuperLinkSettings = SuperLinkSettings()
    tls: TlsSettings = TlsSettings()
    paths: ServerPaths = ServerPaths()
    log_rotation_hours: int = Field(default=24, ge=1, description="Rotate the SuperLink log.")
    log_backups: int = Field(default=14, ge=1, description="Rotated SuperLink logs to keep.")

    def resolved(self, base: Path) -> ServerDeployConfig:
        """A copy whose relative paths are made absolute against ``base``."""
        def fix(p: Path) -> Path:
            return p if p.is_absolute() else (base / p).resolve()
        tls = TlsSettings(**{k: fix(v) for k, v in self.tls.model_dump().items()})
        paths = ServerPaths(**{k: fix(v) for k, v in self.paths.model_dump().items()})
        return self.model_copy(update={"tls": tls, "paths": paths})


def load_server_config(path: Path) -> ServerDeployConfig:
    """Read ``server.toml`` and resolve its relative paths against its folder.

    Raises:
        ConfigError: missing file, invalid TOML or an invalid setting (each named).
    """
    cfg = read_toml_model(path, ServerDeployConfig, kind="Server config",
                          example="the server.toml written by `fedmm server init --out DIR`, "
                          "or pass --config")
    return cfg.resolved(path.resolve().parent)


def write_server_config(cfg: ServerDeployConfig, path: Path) -> Path:
    """Write ``server.toml`` with a header saying what it is (paths as given)."""
    doc = cfg.model_dump(mode="json")
    header = ("# fedmm coordinator config: `fedmm server start|run|register-site|sites --config "
              "this-file`.\n# Relative paths are relative to this file's folder. Keep certs/ca.key "
              "offline once the\n# server certificate is issued (it is needed only to re-issue "
              "it: `fedmm server init --renew`).\n\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + tomli_w.dumps(doc))
    return path


def missing_tls_files(cfg: ServerDeployConfig) -> list[Path]:
    """TLS files named by ``cfg`` that do not exist."""
    return [p for p in (cfg.tls.ca_cert, cfg.tls.server_cert, cfg.tls.server_key) if not p.is_file()]
