"""The site daemon: ``flower-supernode`` plus fedmm's task executor, with the site's key and limits.

Runs in the foreground (``shared/supervisor.py``): SIGTERM or Ctrl-C stop both processes
and everything they started; if the daemon itself is killed, they die with it. Output
goes to the console and the site's log file.

* The SuperNode connects out to the coordinator with TLS and the site's key, and runs
  with ``--isolation process``: it executes nothing itself. Its Runtime API listens on
  127.0.0.1 only and gives tasks only to a holder of the site's secret.
* fedmm's task executor (``client/task_executor.py``) holds that secret and runs each task
  in the verifying runner (``client/task_runner.py``): only app bundles listed in
  site.toml's ``approved_apps`` ever execute.
* The node config carries the site's folders, consent and ``[limits]``, the site's own
  settings, to the ClientApp (``client/site_config.py``).

When the SuperLink refuses to activate the site right after a crash (it still sees the
previous connection until two heartbeats are missed), the daemon waits and tries again.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import TextIO

from client.deploy_config import SiteDeployConfig
from client.site_config import (
    DATA_DIR_KEY,
    SHARE_TEMPLATES_KEY,
    STATE_DIR_KEY,
    limits_node_config,
)
from client.site_keypair import check_private_key
from shared.cert_validity import certificate_validity
from shared.config import ConfigError, RunConfig
from shared.flower_cli import flower_bin, flower_env
from shared.supervisor import Child, StopRequest, accepts_connections, run_children

FLOWER_HOME_DIR = "flower"
#: What the SuperNode prints when the SuperLink refuses to activate it: an unregistered
#: key, or a node the SuperLink still sees online (Flower 1.41 activates only registered
#: or offline nodes; a node goes offline 2 x 30 s after its last heartbeat).
ACTIVATION_REFUSED = "Failed to activate SuperNode"
#: What the SuperNode prints once the SuperLink has activated it.
ACTIVATED = "SuperNode ID:"
RETRY_EVERY_S = 5.0


class SiteDaemonConfigError(ValueError):
    """The site config cannot start a daemon; the message says what to fix."""


def node_config_arg(cfg: SiteDeployConfig) -> str:
    """Flower's ``--node-config`` value: TOML ``key=value`` pairs (JSON strings are valid)."""
    pairs = [f"{DATA_DIR_KEY}={json.dumps(str(cfg.data_dir))}",
             f"{STATE_DIR_KEY}={json.dumps(str(cfg.state_dir))}",
             f"{SHARE_TEMPLATES_KEY}={'true' if cfg.share_templates else 'false'}"]
    pairs += [f"{key}={value!r}" for key, value in limits_node_config(cfg.limits).items()]
    return " ".join(pairs)


def check_ready(cfg: SiteDeployConfig, *, insecure: bool = False) -> list[str]:
    """Refuse to start with a config that cannot work, naming the setting and the fix.

    Returns:
        Warnings (the CA certificate expires within 30 days).

    Raises:
        SiteDaemonConfigError: no server address, missing or expired CA, bad key, no data
            folder, or no approved app (the site would refuse every run).
    """
    problems, warnings = [], []
    if not cfg.server.address:
        problems.append("[server].address is empty; expected the coordinator's host:port (e.g. "
                        "fl.example.org:9093). Fix: edit the site config or re-run `fedmm site "
                        "init --server host:port`.")
    if not insecure:
        if not cfg.server.ca_cert.is_file():
            problems.append(f"[server].ca_cert {cfg.server.ca_cert} does not exist; expected the "
                            "consortium CA certificate from the coordinator (ca.crt). Fix: copy it "
                            "there.")
        else:
            try:
                validity = certificate_validity(cfg.server.ca_cert, name="The consortium CA certificate")
                if validity.problem():
                    problems.append(f"{validity.problem()}. Fix: get the current ca.crt from the "
                                    "coordinator.")
                elif validity.warning():
                    warnings.append(validity.warning())
            except ValueError as err:
                problems.append(str(err))
        try:
            check_private_key(cfg.keys.private_key)
        except ValueError as err:
            problems.append(str(err))
    if not cfg.data_dir.is_dir():
        problems.append(f"data_dir {cfg.data_dir} is not a folder; expected the site's data "
                        "(one study per sub-folder). Fix: correct data_dir in the site config.")
    if not cfg.approved_apps:
        problems.append("site.toml approves no app bundle (approved_apps is empty), so this site "
                        "would refuse every run. Fix: `fedmm site approve --config site.toml` "
                        "approves the fedmm installed here (compare its hash with the "
                        "coordinator's `fedmm server app-hash`).")
    if problems:
        raise SiteDaemonConfigError("Cannot start the site daemon:\n  - " + "\n  - ".join(problems))
    return warnings


def ensure_secret(cfg: SiteDeployConfig) -> Path:
    """The SuperNode/executor shared secret (created once, 0600)."""
    path = cfg.superexec_secret
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
    return path


def make_private(*folders: Path) -> None:
    """Create ``folders`` (and tighten existing ones and what they hold) to 0700/0600:
    they hold cached patient volumes, keys and logs."""
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        for root, dirs, files in os.walk(folder):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o700)
            for name in files:
                path = os.path.join(root, name)
                if not os.path.islink(path):
                    os.chmod(path, 0o600)


def supernode_command(cfg: SiteDeployConfig, *, insecure: bool = False) -> list[str]:
    """The ``flower-supernode`` argument list for ``cfg`` (a resolved site config)."""
    cmd = [flower_bin("flower-supernode"), "--superlink", cfg.server.address]
    if insecure:
        cmd.append("--insecure")
    else:
        cmd += ["--root-certificates", str(cfg.server.ca_cert),
                "--auth-supernode-private-key", str(cfg.keys.private_key)]
    # It executes nothing itself; the Runtime API is local and only for the executor.
    cmd += ["--isolation", "process", "--superexec-auth-secret-file", str(cfg.superexec_secret),
            "--host", "127.0.0.1", "--port", str(cfg.daemon.runtime_port),
            "--node-config", node_config_arg(cfg)]
    if cfg.daemon.max_retries is not None:
        cmd += ["--max-retries", str(cfg.daemon.max_retries)]
    if cfg.daemon.max_wait_time_s is not None:
        cmd += ["--max-wait-time", str(cfg.daemon.max_wait_time_s)]
    return cmd


def executor_command(cfg: SiteDeployConfig, *, site_config: Path) -> list[str]:
    """fedmm's task executor for this site's SuperNode."""
    return [sys.executable, "-m", "client.task_executor",
            "--runtime-api-address", f"127.0.0.1:{cfg.daemon.runtime_port}",
            "--secret-file", str(cfg.superexec_secret), "--site-config", str(site_config)]


def explain_exit(code: int, last_lines: list[str], cfg: SiteDeployConfig, *,
                 insecure: bool = False) -> str:
    """A sentence saying why the SuperNode stopped and what to do (empty when unknown)."""
    text = "\n".join(last_lines)
    if "certificate has expired" in text:
        return ("The server's TLS certificate has expired. Fix: the coordinator re-issues it "
                "(`fedmm server init --renew`) and restarts; nothing changes at the site.")
    if "certificate is not yet valid" in text:
        return ("The server's TLS certificate is not valid yet: check this machine's clock "
                "(and the coordinator's).")
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


def data_line(cfg: SiteDeployConfig) -> str:
    """One line about the site's data, said once at start: how many studies training can
    use (and where the problem list is), or that none can be used. It reads the folder with
    the run file's data settings (the defaults without one), as ``fedmm site check`` does."""
    from client.data.site_problems import summarize_site_data
    from shared.run_file import read_run_file

    try:
        run = read_run_file(cfg.run_file, owner="the coordinator") if cfg.run_file else RunConfig()
    except ConfigError as err:
        return f"cannot read run_file ({err}); not checking the data at start."
    try:
        summary = summarize_site_data(cfg.data_dir, data=run.data, cache_dir=cfg.state_dir / "cache",
                                      seed=run.seed, problems_dir=cfg.state_dir)
    except ValueError as err:  # the folder cannot be read as the layout at all
        return f"WARNING: site {cfg.name!r} has no usable data: {err}"
    line = summary.line(repr(cfg.name))
    return ("WARNING: " + line) if summary.idle else line


def _say(text: str, *, log: TextIO, console: TextIO) -> None:
    line = f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} {text}\n"
    log.write(line)
    log.flush()
    console.write(line)


def run_site_daemon(cfg: SiteDeployConfig, *, site_config: Path, insecure: bool = False,
                    console: TextIO | None = None) -> int:
    """Run the SuperNode and the task executor in the foreground until stopped.

    A refused activation is retried every 5 s for ``[daemon].activation_retry_s``: right
    after a crash the SuperLink still sees the site's previous connection as online.

    Args:
        site_config: the site.toml ``cfg`` was read from; the runner reads the approved
            apps from it for every task.

    Returns:
        0 after a requested stop (SIGTERM/Ctrl-C), else the SuperNode's exit code.

    Raises:
        SiteDaemonConfigError: the config cannot work (see :func:`check_ready`).
    """
    console = console or sys.stdout
    warnings = check_ready(cfg, insecure=insecure)
    flwr_home = cfg.state_dir / FLOWER_HOME_DIR
    make_private(cfg.state_dir, cfg.daemon.log_file.parent, cfg.keys.private_key.parent)
    flwr_home.mkdir(parents=True, exist_ok=True)
    ensure_secret(cfg)
    children = [
        # The executor starts once the SuperLink has activated the node (Flower prints its
        # node id then), so a refused activation costs a SuperNode start, nothing more.
        Child("supernode", supernode_command(cfg, insecure=insecure),
              ready=accepts_connections("127.0.0.1", cfg.daemon.runtime_port),
              ready_line=ACTIVATED, ready_timeout_s=float("inf")),  # it retries on its own
        Child("executor", executor_command(cfg, site_config=site_config.resolve())),
    ]
    stop = StopRequest()
    give_up_at: float | None = None
    with cfg.daemon.log_file.open("a", encoding="utf-8", errors="replace") as log, stop.installed():
        for warning in warnings:
            _say(f"fedmm site {cfg.name!r}: WARNING: {warning}.", log=log, console=console)
        if cfg.daemon.check_data_at_start:
            _say(f"fedmm site {cfg.name!r}: {data_line(cfg)}", log=log, console=console)
        while True:
            _say(f"fedmm site {cfg.name!r}: starting SuperNode -> {cfg.server.address}"
                 f"{' (INSECURE)' if insecure else ''}; {len(cfg.approved_apps)} approved app "
                 "bundle(s)", log=log, console=console)
            ended = run_children(children, env=flower_env(flwr_home), cwd=cfg.state_dir, log=log,
                                 console=console, stop=stop, flwr_home=flwr_home)
            if stop.requested:
                _say(f"fedmm site {cfg.name!r}: SuperNode stopped (on request).", log=log,
                     console=console)
                return 0
            refused = any(ACTIVATION_REFUSED in line for line in ended.last_lines)
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
            hint = explain_exit(ended.code, ended.last_lines, cfg, insecure=insecure)
            what = "SuperNode" if ended.name == "supernode" else "task executor"
            _say(f"fedmm site {cfg.name!r}: {what} stopped (exit code {ended.code}). {hint}".rstrip(),
                 log=log, console=console)
            return ended.code if ended.code != 0 else 1
