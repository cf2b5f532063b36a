"""The coordinator's deployment config (``server.toml``): ports, proxy, TLS, state paths.

Deployment only: secrets and key paths live here, never in the RunConfig that travels to
the sites. Relative paths are relative to the folder holding the file, so a coordinator
folder made by ``fedmm server init`` can be moved or mounted into a container as a whole.

Flower 1.41's SuperLink serves its Fleet API (sites), Control API (``flwr run``,
``flwr supernode register``; no login in the open-source edition) and Runtime API
(ServerApp) on one port. So the SuperLink listens on ``127.0.0.1:internal_port`` only,
and the one public port (``[superlink].host``/``port``) belongs to a reverse proxy
(nginx, ``server/proxy.py``) that forwards only the Fleet API's routes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomli_w
from pydantic import Field, field_validator, model_validator

from shared.config import FrozenModel
from shared.flower_cli import check_superlink_address
from shared.run_file import read_toml_model

SERVER_CONFIG_FILE = "server.toml"
#: The name of the coordinator's SuperLink connection in Flower's own config.toml.
CONNECTION = "fedmm"


class SuperLinkSettings(FrozenModel):
    """The one public port (the proxy's) and the SuperLink's own, loopback-only port."""

    host: str = Field(default="0.0.0.0",
                      description="Bind address of the one public port (the reverse proxy).")
    port: int = Field(default=9093, gt=0, lt=65536,
                      description="The one public port: sites connect to it (Fleet API only).")
    public_address: str = Field(
        default="localhost:9093", description="host:port the sites put in their site.toml.")
    internal_port: int = Field(
        default=9091, gt=0, lt=65536,
        description="The SuperLink's own port, bound to 127.0.0.1 only: the proxy, the "
        "SuperExec and this machine's `fedmm server ...` commands use it.")

    @model_validator(mode="before")
    @classmethod
    def _no_control_address(cls, data: Any) -> Any:
        if isinstance(data, dict) and "control_address" in data:
            raise ValueError(
                "control_address is no longer a setting: the SuperLink now listens on "
                "127.0.0.1:[superlink].internal_port only, and fedmm's own commands use that. "
                "Fix: delete the control_address line (and keep port = the public port).")
        return data

    @field_validator("public_address")
    @classmethod
    def _address(cls, value: str) -> str:
        return check_superlink_address(value)

    @model_validator(mode="after")
    def _distinct_ports(self) -> SuperLinkSettings:
        if self.internal_port == self.port:
            raise ValueError(f"internal_port and port must differ (both {self.port}): the proxy "
                             "listens on port, the SuperLink on 127.0.0.1:internal_port")
        return self

    @property
    def control_address(self) -> str:
        """Where this machine's ``flwr`` reaches the Control API: loopback only."""
        return f"127.0.0.1:{self.internal_port}"


class ProxySettings(FrozenModel):
    """The reverse proxy on the public port (nginx from the distribution's packages)."""

    nginx: str = Field(default="nginx",
                       description="The nginx program: a path, or a name looked up on PATH and in "
                       "/usr/sbin (Debian: apt-get install nginx).")
    max_body_mb: int = Field(default=64, ge=8, le=1024,
                             description="Largest request body (Flower sends 5 MiB chunks).")


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
    proxy_config: Path = Field(default=Path("nginx.conf"),
                               description="The proxy's config, written by `fedmm server init` "
                               "and again by every `fedmm server start` from this file.")
    proxy_dir: Path = Field(default=Path("state/proxy"),
                            description="The proxy's pid file and temporary files.")
    superexec_secret: Path = Field(default=Path("state/superexec.secret"),
                                   description="Shared secret of the SuperLink and its SuperExec "
                                   "(Runtime API authentication; 0600).")


class ServerDeployConfig(FrozenModel):
    """Everything ``fedmm server start|run|register-site|sites`` needs (``server.toml``)."""

    superlink: SuperLinkSettings = SuperLinkSettings()
    proxy: ProxySettings = ProxySettings()
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
              "this-file`.\n# Relative paths are relative to this file's folder. The CA's private "
              "key is not here:\n# `fedmm server init` wrote it to a separate folder to keep "
              "offline (needed only for --renew).\n\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + tomli_w.dumps(doc))
    return path


def missing_tls_files(cfg: ServerDeployConfig) -> list[Path]:
    """TLS files named by ``cfg`` that do not exist."""
    return [p for p in (cfg.tls.ca_cert, cfg.tls.server_cert, cfg.tls.server_key) if not p.is_file()]
