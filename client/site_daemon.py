"""The site daemon: ``flower-supernode`` with TLS, the site's key and its node config.

Runs in the foreground (``client/foreground.py``): SIGTERM or Ctrl-C stop the SuperNode
and everything it started; output goes to the console and the site's log file. When the
SuperLink refuses to activate the site right after a crash (it still sees the previous
connection until two heartbeats are missed), the daemon waits and tries again.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TextIO

from client.deploy_config import SiteDeployConfig
from client.foreground import StopRequest, run_foreground
from client.site_config import DATA_DIR_KEY, SHARE_TEMPLATES_KEY, STATE_DIR_KEY
from client.site_keypair import check_private_key
from shared.flower_cli import flower_bin, flower_env

FLOWER_HOME_DIR = "flower"
#: What the SuperNode prints when the SuperLink refuses to activate it: an unregistered
#: key, or a node the SuperLink still sees online (Flower 1.41 activates only registered
#: or offline nodes; a node goes offline 2 x 30 s after its last heartbeat).
ACTIVATION_REFUSED = "Failed to activate SuperNode"
RETRY_EVERY_S = 10.0


class SiteDaemonConfigError(ValueError):
    """The site config cannot start a daemon; the message says what to fix."""


def node_config_arg(cfg: SiteDeployConfig) -> str:
    """Flower's ``--node-config`` value: TOML ``key="value"`` pairs (JSON strings are valid)."""
    return (f"{DATA_DIR_KEY}={json.dumps(str(cfg.data_dir))} "
            f"{STATE_DIR_KEY}={json.dumps(str(cfg.state_dir))} "
            f"{SHARE_TEMPLATES_KEY}={'true' if cfg.share_templates else 'false'}")


def check_ready(cfg: SiteDeployConfig, *, insecure: bool = False) -> None:
    """Refuse to start with a config that cannot work, naming the setting and the fix.

    Raises:
        SiteDaemonConfigError: no server address, missing CA, bad key or no data folder.
    """
    problems = []
    if not cfg.server.address:
        problems.append("[server].address is empty; expected the coordinator's host:port (e.g. "
                        "fl.example.org:9093). Fix: edit the site config or re-run `fedmm site "
                        "init --server host:port`.")
    if not insecure:
        if not cfg.server.ca_cert.is_file():
            problems.append(f"[server].ca_cert {cfg.server.ca_cert} does not exist; expected the "
                            "consortium CA certificate from the coordinator (ca.crt). Fix: copy it "
                            "there.")
        try:
            check_private_key(cfg.keys.private_key)
        except ValueError as err:
            problems.append(str(err))
    if not cfg.data_dir.is_dir():
        problems.append(f"data_dir {cfg.data_dir} is not a folder; expected the site's data "
                        "(one study per sub-folder). Fix: correct data_dir in the site config.")
    if problems:
        raise SiteDaemonConfigError("Cannot start the site daemon:\n  - " + "\n  - ".join(problems))


def supernode_command(cfg: SiteDeployConfig, *, insecure: bool = False) -> list[str]:
    """The ``flower-supernode`` argument list for ``cfg`` (a resolved site config)."""
    cmd = [flower_bin("flower-supernode"), "--superlink", cfg.server.address]
    if insecure:
        cmd.append("--insecure")
    else:
        cmd += ["--root-certificates", str(cfg.server.ca_cert),
                "--auth-supernode-private-key", str(cfg.keys.private_key)]
    # The runtime API is only for the SuperNode's own ClientApp processes: local only.
    cmd += ["--host", "127.0.0.1", "--port", str(cfg.daemon.runtime_port),
            "--node-config", node_config_arg(cfg)]
    if cfg.daemon.max_retries is not None:
        cmd += ["--max-retries", str(cfg.daemon.max_retries)]
    if cfg.daemon.max_wait_time_s is not None:
        cmd += ["--max-wait-time", str(cfg.daemon.max_wait_time_s)]
    return cmd


def explain_exit(code: int, last_lines: list[str], cfg: SiteDeployConfig, *,
                 insecure: bool = False) -> str:
    """A sentence saying why the SuperNode stopped and what to do (empty when unknown)."""
    text = "\n".join(last_lines)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return (f"The server's TLS certificate is not signed by {cfg.server.ca_cert}. Fix: get "
                "the consortium's current ca.crt from the coordinator.")
    if ACTIVATION_REFUSED in text:
        return (f"The SuperLink refused this site's key: it is not registered. Send "
                f"{cfg.keys.private_key}.pub to the coordinator (`fedmm server register-site`).")
    if insecure and code != 0:
        return ("The plain-HTTP connection failed: a SuperLink started without --insecure "
                "requires TLS and refuses it. Fix: start the site without --insecure.")
    if code != 0:
        return (f"Check that {cfg.server.address} is reachable from this machine (outgoing TCP) "
                "and see the log above.")
    return ""


def _say(text: str, *, log: TextIO, console: TextIO) -> None:
    line = f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} {text}\n"
    log.write(line)
    log.flush()
    console.write(line)


def run_site_daemon(cfg: SiteDeployConfig, *, insecure: bool = False,
                    console: TextIO | None = None) -> int:
    """Run the SuperNode in the foreground until it exits or is told to stop.

    A refused activation is retried every 10 s for ``[daemon].activation_retry_s``: right
    after a crash the SuperLink still sees the site's previous connection as online.

    Returns:
        0 after a requested stop (SIGTERM/Ctrl-C), else the SuperNode's exit code.

    Raises:
        SiteDaemonConfigError: the config cannot work (see :func:`check_ready`).
    """
    console = console or sys.stdout
    check_ready(cfg, insecure=insecure)
    cmd = supernode_command(cfg, insecure=insecure)
    flwr_home = cfg.state_dir / FLOWER_HOME_DIR
    for folder in (cfg.state_dir, flwr_home, cfg.daemon.log_file.parent):
        folder.mkdir(parents=True, exist_ok=True)
    stop = StopRequest()
    give_up_at: float | None = None
    with cfg.daemon.log_file.open("a", encoding="utf-8", errors="replace") as log, stop.installed():
        while True:
            _say(f"fedmm site {cfg.name!r}: starting SuperNode -> {cfg.server.address}"
                 f"{' (INSECURE)' if insecure else ''}", log=log, console=console)
            code, last = run_foreground(cmd, env=flower_env(flwr_home), cwd=cfg.state_dir, log=log,
                                        console=console, stop=stop, flwr_home=flwr_home)
            if stop.requested:
                _say(f"fedmm site {cfg.name!r}: SuperNode stopped (on request).", log=log,
                     console=console)
                return 0
            refused = any(ACTIVATION_REFUSED in line for line in last)
            if refused and give_up_at is None:
                give_up_at = time.monotonic() + cfg.daemon.activation_retry_s
            if refused and give_up_at is not None and time.monotonic() < give_up_at:
                _say(f"fedmm site {cfg.name!r}: the SuperLink refused to activate this site: its "
                     "key is not registered yet, or the SuperLink still sees this site's previous "
                     f"connection (released about 60 s after it ended). Retrying in "
                     f"{RETRY_EVERY_S:.0f} s.", log=log, console=console)
                if stop.wait(RETRY_EVERY_S):
                    _say(f"fedmm site {cfg.name!r}: stopped (on request).", log=log, console=console)
                    return 0
                continue
            hint = explain_exit(code, last, cfg, insecure=insecure)
            _say(f"fedmm site {cfg.name!r}: SuperNode stopped (exit code {code}). {hint}".rstrip(),
                 log=log, console=console)
            return code
