"""A real deployment on 127.0.0.1 for tests: nginx + a TLS + auth SuperLink and site daemons, via `fedmm`.

Every process is started through fedmm's own commands (`fedmm server start`, which runs the
SuperLink on a loopback port, its SuperExec and nginx on the public port; `fedmm site
start`; `fedmm server run`) on free ports with private Flower homes, and always stopped:
Flower's helpers run in sessions of their own, so they are found and stopped by the
``FLWR_HOME`` they inherit (``shared.flower_cli.processes_using_home``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w
import torch

from client.site_daemon import FLOWER_HOME_DIR
from shared.flower_cli import processes_using_home, stop_processes_using_home
from tests.fedmm_cli import run_fedmm

FEDMM = str(Path(sys.executable).parent / "fedmm")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fedmm_inline(*args: str) -> str:
    """Run a quick `fedmm` command in this process (no start-up cost); return its output."""
    result = run_fedmm(*args)
    if result.exit_code != 0:
        raise RuntimeError(f"fedmm {' '.join(args)} failed ({result.exit_code}): {result.output}"
                           f"{result.exception!r}")
    return result.output


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start a long-running `fedmm` command in its own session, output to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as fh:
        return subprocess.Popen([FEDMM, *args], stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)


def wait_for(predicate: Callable[[], bool], *, timeout_s: float, what: str,
             poll_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def kill_hard(proc: subprocess.Popen[bytes] | None, *homes: Path) -> None:
    """SIGKILL a started command and every Flower process of the given homes (a crash)."""
    if proc is not None and proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    for home in homes:
        for pid in processes_using_home(home):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def stop_gracefully(proc: subprocess.Popen[bytes] | None, timeout_s: float = 60.0) -> int | None:
    """SIGTERM a started command (what systemd does) and return its exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    return proc.returncode


@dataclass
class Site:
    name: str
    folder: Path
    data: Path
    node_id: str = ""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.folder / "site.toml"

    @property
    def log(self) -> Path:
        return self.folder / "logs" / "site.log"

    @property
    def flwr_home(self) -> Path:
        return self.folder / "state" / FLOWER_HOME_DIR

    @property
    def state_dir(self) -> Path:
        return self.folder / "state"

    def rounds_trained(self) -> list[int]:
        """The rounds recorded in the site's own state file (on its disk)."""
        path = self.state_dir / "site_state.pt"
        return list(torch.load(path, weights_only=True)["rounds"]) if path.exists() else []


@dataclass
class Deployment:
    """A coordinator folder, a running SuperLink and registered, running sites."""

    root: Path
    port: int = field(default_factory=free_port)
    internal_port: int = field(default_factory=free_port)
    sites: list[Site] = field(default_factory=list)
    server_proc: subprocess.Popen[bytes] | None = None
    extra: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def server_dir(self) -> Path:
        return self.root / "server"

    @property
    def server_config(self) -> Path:
        return self.server_dir / "server.toml"

    @property
    def server_home(self) -> Path:
        return self.server_dir / "state" / "flwr-home"

    @property
    def ca_cert(self) -> Path:
        return self.server_dir / "certs" / "ca.crt"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def init_server(self) -> None:
        fedmm_inline("server", "init", "--out", str(self.server_dir), "--host", "127.0.0.1",
                     "--port", str(self.port), "--internal-port", str(self.internal_port),
                     "--ip", "127.0.0.1")

    def start_server(self) -> None:
        self.server_proc = start(["server", "start", "--config", str(self.server_config)],
                                 self.root / "superlink.out")

        def listening() -> bool:
            if self.server_proc is not None and self.server_proc.poll() is not None:
                raise RuntimeError(f"fedmm server start exited: {(self.root / 'superlink.out').read_text()}")
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", self.port)) == 0
        wait_for(listening, timeout_s=120, what="the coordinator's proxy to listen")

    def add_site(self, name: str, data: Path, *, register: bool = True,
                 ca_cert: Path | None = None, give_up: bool = False,
                 limits: dict[str, float] | None = None) -> Site:
        """Create (and register) a site folder; ``give_up``: the daemon exits at the first
        refused connection or activation instead of retrying (for refusal tests);
        ``limits``: entries of the site's own [limits]."""
        site = Site(name=name, folder=self.root / name, data=data)
        fedmm_inline("site", "init", "--name", name, "--data", str(data), "--out", str(site.folder),
                     "--server", self.address, "--ca-cert", str(ca_cert or self.ca_cert),
                     "--runtime-port", str(free_port()))
        if give_up or limits:
            raw = tomllib.loads(site.config.read_text())
            if give_up:
                raw["daemon"].update(max_retries=1, activation_retry_s=0)
            raw["limits"].update(limits or {})
            site.config.write_text(tomli_w.dumps(raw))
        if register:
            out = fedmm_inline("server", "register-site", str(site.folder / "keys" / "site.key.pub"),
                               "--name", name, "--config", str(self.server_config))
            site.node_id = out.split("as node ")[1].split(".")[0].strip()
        self.sites.append(site)
        return site

    def start_site(self, site: Site, *extra: str) -> subprocess.Popen[bytes]:
        site.proc = start(["site", "start", "--config", str(site.config), *extra],
                          site.folder / "daemon.out")
        return site.proc

    def crash_site(self, site: Site) -> None:
        kill_hard(site.proc, site.flwr_home)

    def crash_server(self, *runs: subprocess.Popen[bytes]) -> None:
        for run in runs:
            kill_hard(run)
        kill_hard(self.server_proc, self.server_home)

    def run(self, run_file: Path, out: Path, *extra: str) -> subprocess.Popen[bytes]:
        proc = start(["server", "run", "--config", str(run_file), "--server-config",
                      str(self.server_config), "--out", str(out), *extra], out.parent / f"{out.name}.out")
        self.extra.append(proc)
        return proc

    def homes(self) -> list[Path]:
        return [self.server_home, *(s.flwr_home for s in self.sites)]

    def stop(self) -> None:
        """Stop everything, gracefully first; nothing of this deployment survives."""
        for proc in self.extra:
            kill_hard(proc)
        for site in self.sites:
            stop_gracefully(site.proc)
        stop_gracefully(self.server_proc)
        for home in self.homes():
            stop_processes_using_home(home, grace_s=5.0)

    def leftovers(self) -> list[int]:
        return [pid for home in self.homes() for pid in processes_using_home(home)]
