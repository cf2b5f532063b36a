"""The coordinator's processes: the SuperLink, its SuperExec and the proxy, run as one daemon.

Secure by default:

* ``flower-superlink`` listens on ``127.0.0.1:[superlink].internal_port`` only, with TLS,
  SuperNode authentication, a persistent database and runtime dependency installation
  off. It runs with ``--isolation process``: it starts no ServerApp itself.
* ``flower-superexec`` starts the ServerApps. It authenticates to the Runtime API with a
  shared secret (``--superexec-auth-secret-file``, Flower's own mechanism), so no other
  local process can take a run's task.
* nginx (``server/proxy.py``) owns the one public port and forwards only the Fleet API.

``fedmm server start`` supervises the three (``shared/supervisor.py``): one log each,
SIGTERM stops all of them, and if one ends the others are stopped and the daemon exits
non-zero so the service manager restarts it. Insecure mode (no TLS, no site
authentication) exists for tests on one machine and must be asked for explicitly.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import TextIO

import tomli_w

from server.deploy_config import CONNECTION, ServerDeployConfig, missing_tls_files
from server.proxy import check_proxy_config, proxy_command, write_proxy_config
from shared.cert_validity import certificate_validity
from shared.flower_cli import flower_bin, flower_env
from shared.supervisor import Child, StopRequest, accepts_connections, run_children

_SECRET_BYTES = 32


class SuperLinkConfigError(ValueError):
    """The server config cannot start a secure coordinator; the message says what to fix."""


def ensure_superexec_secret(cfg: ServerDeployConfig) -> Path:
    """The Runtime API's shared secret (created once, 0600, never leaves this machine)."""
    path = cfg.paths.superexec_secret
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(_SECRET_BYTES))
    os.chmod(path, 0o600)
    return path


def check_certificates(cfg: ServerDeployConfig) -> list[str]:
    """Refuse expired or not-yet-valid certificates; return warnings for ones expiring soon.

    Raises:
        SuperLinkConfigError: a TLS file is missing, unreadable, expired or not yet valid.
    """
    missing = missing_tls_files(cfg)
    if missing:
        raise SuperLinkConfigError(
            f"Expected the SuperLink's TLS files, got none at {[str(p) for p in missing]}. "
            "Fix: create them with `fedmm server init --out DIR` (or correct [tls] in the "
            "server config). fedmm does not start an unencrypted SuperLink unless you pass "
            "--insecure, which is meant for tests on one machine only."
        )
    warnings = []
    for path, what in ((cfg.tls.server_cert, "The server certificate"),
                       (cfg.tls.ca_cert, "The consortium CA certificate")):
        try:
            validity = certificate_validity(path, name=f"{what} {path}")
        except ValueError as err:
            raise SuperLinkConfigError(str(err)) from err
        if validity.problem():
            raise SuperLinkConfigError(
                f"{validity.problem()}. Sites refuse it. Fix: re-issue the server certificate "
                "with `fedmm server init --out DIR --renew` (bring the CA key folder back from "
                "offline), then start again.")
        if validity.warning():
            warnings.append(validity.warning())
    return warnings


def superlink_command(cfg: ServerDeployConfig, *, insecure: bool = False) -> list[str]:
    """The ``flower-superlink`` argument list for ``cfg`` (a resolved config)."""
    cmd = [flower_bin("flower-superlink")]
    if insecure:
        cmd.append("--insecure")
    else:
        cmd += ["--ssl-ca-certfile", str(cfg.tls.ca_cert), "--ssl-certfile", str(cfg.tls.server_cert),
                "--ssl-keyfile", str(cfg.tls.server_key), "--enable-supernode-auth"]
    cmd += [
        # Loopback only: the proxy is the one way in from outside.
        "--host", "127.0.0.1", "--port", str(cfg.superlink.internal_port),
        "--isolation", "process",
        "--superexec-auth-secret-file", str(cfg.paths.superexec_secret),
        "--database", str(cfg.paths.database),
        # Otherwise every run `uv sync`s the app's dependencies, torch included.
        "--disable-runtime-dependency-installation",
        "--log-file", str(cfg.paths.log_file),
        "--log-rotation-interval-hours", str(cfg.log_rotation_hours),
        "--log-rotation-backup-count", str(cfg.log_backups),
    ]
    return cmd


def superexec_command(cfg: ServerDeployConfig, *, insecure: bool = False) -> list[str]:
    """The ``flower-superexec`` that starts ServerApps, authenticated by the shared secret."""
    cmd = [flower_bin("flower-superexec"), "--runtime-api-address",
           f"127.0.0.1:{cfg.superlink.internal_port}",
           "--superexec-auth-secret-file", str(cfg.paths.superexec_secret)]
    return cmd + (["--insecure"] if insecure else ["--root-certificates", str(cfg.tls.ca_cert)])


def write_connection(cfg: ServerDeployConfig, *, insecure: bool = False) -> Path:
    """Write Flower's ``$FLWR_HOME/config.toml`` with the coordinator's connection.

    The coordinator's ``flwr run|ls|supernode ...`` calls use the connection named
    ``fedmm``: the SuperLink on loopback; with TLS it trusts only the consortium CA.
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


def coordinator_children(cfg: ServerDeployConfig, *, insecure: bool = False) -> list[Child]:
    """The three processes, in start order, each started once the previous one serves."""
    logs = cfg.paths.log_file.parent
    internal = accepts_connections("127.0.0.1", cfg.superlink.internal_port)
    public_host = "127.0.0.1" if cfg.superlink.host in ("0.0.0.0", "") else cfg.superlink.host.strip("[]")
    public_host = "::1" if public_host == "::" else public_host
    return [
        # Flower writes superlink.log itself (--log-file); its console output goes to ours.
        Child("superlink", superlink_command(cfg, insecure=insecure), ready=internal),
        Child("superexec", superexec_command(cfg, insecure=insecure),
              log_file=logs / "superexec.log"),
        # nginx writes proxy-access.log and proxy-error.log itself.
        Child("proxy", proxy_command(cfg),
              ready=accepts_connections(public_host, cfg.superlink.port)),
    ]


def prepare_coordinator(cfg: ServerDeployConfig, *, insecure: bool = False) -> list[str]:
    """Everything the three processes need, checked before any starts; returns warnings.

    Raises:
        SuperLinkConfigError: TLS files missing, expired or not yet valid.
        ProxyError: nginx is missing or refuses the generated config.
    """
    warnings = [] if insecure else check_certificates(cfg)
    for folder in (cfg.paths.database.parent, cfg.paths.log_file.parent, cfg.paths.flwr_home,
                   cfg.paths.proxy_dir):
        folder.mkdir(parents=True, exist_ok=True)
    ensure_superexec_secret(cfg)
    write_connection(cfg, insecure=insecure)
    write_proxy_config(cfg, insecure=insecure)
    check_proxy_config(cfg)
    return warnings


def run_coordinator(cfg: ServerDeployConfig, *, insecure: bool = False,
                    console: TextIO | None = None) -> int:
    """Run the SuperLink, SuperExec and proxy in the foreground until stopped or one ends.

    Returns:
        0 after a requested stop (SIGTERM/Ctrl-C), 1 when one of them ended by itself.
    """
    console = console or sys.stdout
    children = coordinator_children(cfg, insecure=insecure)
    stop = StopRequest()
    with stop.installed():
        # The SuperLink's working directory is the ServerApp's: the state folder, not
        # wherever the operator happened to be (outputs always go to absolute paths).
        ended = run_children(children, env=flower_env(cfg.paths.flwr_home),
                             cwd=cfg.paths.database.parent, log=None, console=console, stop=stop,
                             flwr_home=cfg.paths.flwr_home)
    if stop.requested and not ended.name:
        console.write("fedmm coordinator: stopped (on request).\n")
        return 0
    what = ("never started serving" if ended.not_ready else f"stopped (exit code {ended.code})")
    tail = "\n".join(ended.last_lines[-10:])
    console.write(f"fedmm coordinator: the {ended.name} {what}; the other processes were stopped. "
                  f"Its last output:\n{tail}\nSee {cfg.paths.log_file.parent} for every log.\n")
    return 1
