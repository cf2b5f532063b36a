"""The coordinator's SuperLink: the ``flower-superlink`` command line and the CLI connection.

Secure by default: TLS, SuperNode authentication, a persistent database, runtime
dependency installation off. Insecure mode exists for local tests only and must be asked
for explicitly.
"""

from __future__ import annotations

import os
from pathlib import Path

import tomli_w

from server.deploy_config import CONNECTION, ServerDeployConfig, missing_tls_files
from shared.flower_cli import flower_bin, flower_env


class SuperLinkConfigError(ValueError):
    """The server config cannot start a secure SuperLink; the message says what to fix."""


def superlink_command(cfg: ServerDeployConfig, *, insecure: bool = False) -> list[str]:
    """The ``flower-superlink`` argument list for ``cfg``.

    Args:
        cfg: a resolved server config (absolute paths).
        insecure: no TLS and no SuperNode authentication (local tests only).

    Raises:
        SuperLinkConfigError: TLS files are missing and ``insecure`` is false.
    """
    cmd = [flower_bin("flower-superlink")]
    if insecure:
        cmd.append("--insecure")
    else:
        missing = missing_tls_files(cfg)
        if missing:
            raise SuperLinkConfigError(
                f"Expected the SuperLink's TLS files, got none at {[str(p) for p in missing]}. "
                "Fix: create them with `fedmm server init --out DIR` (or correct [tls] in the "
                "server config). fedmm does not start an unencrypted SuperLink unless you pass "
                "--insecure, which is meant for tests on one machine only."
            )
        cmd += ["--ssl-ca-certfile", str(cfg.tls.ca_cert), "--ssl-certfile", str(cfg.tls.server_cert),
                "--ssl-keyfile", str(cfg.tls.server_key), "--enable-supernode-auth"]
    cmd += [
        "--host", cfg.superlink.host, "--port", str(cfg.superlink.port),
        "--database", str(cfg.paths.database),
        # Otherwise every run `uv sync`s the app's dependencies, torch included.
        "--disable-runtime-dependency-installation",
        "--log-file", str(cfg.paths.log_file),
        "--log-rotation-interval-hours", str(cfg.log_rotation_hours),
        "--log-rotation-backup-count", str(cfg.log_backups),
    ]
    return cmd


def write_connection(cfg: ServerDeployConfig, *, insecure: bool = False) -> Path:
    """Write Flower's ``$FLWR_HOME/config.toml`` with the coordinator's connection.

    The coordinator's ``flwr run|ls|supernode ...`` calls use the connection named
    ``fedmm``; with TLS it trusts only the consortium CA.
    """
    conn: dict[str, object] = {"address": cfg.superlink.control_address}
    if insecure:
        conn["insecure"] = True
    else:
        conn["root-certificates"] = str(cfg.tls.ca_cert)
    path = cfg.paths.flwr_home / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps({"superlink": {"default": CONNECTION, CONNECTION: conn}}))
    return path


def exec_superlink(cfg: ServerDeployConfig, *, insecure: bool = False) -> None:
    """Replace this process by the SuperLink (so service managers signal it directly).

    ``flower-superlink`` stops its SuperExec and ServerApps itself on SIGTERM and writes
    its own log file; nothing of fedmm needs to stay in between.
    """
    cmd = superlink_command(cfg, insecure=insecure)
    for folder in (cfg.paths.database.parent, cfg.paths.log_file.parent, cfg.paths.flwr_home):
        folder.mkdir(parents=True, exist_ok=True)
    write_connection(cfg, insecure=insecure)
    # The SuperLink's working directory is the ServerApp's: make it the state folder, not
    # wherever the operator happened to be (outputs always go to absolute paths anyway).
    os.chdir(cfg.paths.database.parent)
    os.execve(cmd[0], cmd, flower_env(cfg.paths.flwr_home))
