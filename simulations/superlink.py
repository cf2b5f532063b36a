"""A private, throw-away simulation SuperLink on a free 127.0.0.1 port.

Flower's ``:local:`` SuperLink is a detached singleton on a fixed port (FLOWER_NOTES.md
P7); ``simulate`` instead starts its own, in its own process group, with its own
``FLWR_HOME``, and always stops it, so runs and tests never collide or leak processes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from server.run_control import flower_bin, flower_env

CONNECTION = "fedmm-sim"
#: How often the SuperExec the SuperLink starts asks for a run to launch. Flower's default,
#: 1 s, is waited once per run before the ServerApp starts; this SuperLink is private and
#: local, so asking 20 times a second costs nothing (Flower allows 0.01 s to 60 s).
TASK_POLL_INTERVAL_S = 0.05


class SuperLinkStartError(RuntimeError):
    """The SuperLink did not come up; the message points at its output."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _group_gone(pgid: int, *, within_s: float) -> bool:
    """Whether process group ``pgid`` has no member left, polled for up to ``within_s``."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # a member we cannot signal still exists
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


class SimulationSuperLink:
    """Context manager: ``flower-superlink --simulation`` bound to 127.0.0.1, stopped on exit."""

    def __init__(self, *, flwr_home: Path, log_file: Path, startup_timeout_s: float = 60.0,
                 import_first: Path | None = None, env: Mapping[str, str] | None = None) -> None:
        """``import_first``: an app folder whose packages every process the SuperLink starts
        must import before this installation's: it goes first on their PYTHONPATH and is
        the SuperLink's working directory (Ray puts the driver's working directory first
        on its workers' path). ``env``: extra environment variables for the SuperLink and
        everything it starts (e.g. ``RAY_ADDRESS``, which the simulation's ``ray.init``
        reads to join an existing cluster)."""
        self.extra_env = dict(env or {})
        self.flwr_home = flwr_home
        self.log_file = log_file
        self.import_first = import_first
        self.port = free_port()
        self.startup_timeout_s = startup_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def connection(self) -> str:
        return CONNECTION

    def __enter__(self) -> SimulationSuperLink:
        if self.proc is not None:
            raise RuntimeError("this SimulationSuperLink is already running; enter it once")
        self.flwr_home.mkdir(parents=True, exist_ok=True)
        (self.flwr_home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n'
            f'[superlink.{CONNECTION}]\naddress = "127.0.0.1:{self.port}"\ninsecure = true\n'
        )
        cmd = [
            flower_bin("flower-superlink"), "--insecure", "--simulation",
            "--isolation", "subprocess", "--host", "127.0.0.1", "--port", str(self.port),
            "--database", str(self.flwr_home / "state.db"),
            "--disable-runtime-dependency-installation",
            "--log-file", str(self.log_file),
        ]
        env = {**flower_env(self.flwr_home),
               "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": str(TASK_POLL_INTERVAL_S), **self.extra_env}
        if self.import_first is not None:
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(self.import_first), env.get("PYTHONPATH", "")) if p)
        with (self.flwr_home / "superlink.out").open("ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True, cwd=self.import_first)
        self._wait_until_listening()
        return self

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise SuperLinkStartError(
                    f"flower-superlink exited at start (code {self.proc.returncode}); see "
                    f"{self.flwr_home / 'superlink.out'}"
                )
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        self.stop()
        raise SuperLinkStartError(f"flower-superlink did not listen on 127.0.0.1:{self.port} within "
                           f"{self.startup_timeout_s:.0f} s; see {self.flwr_home / 'superlink.out'}")

    def stop(self) -> None:
        """Stop the SuperLink and everything it started (SuperExec, simulation, Ray)."""
        if self.proc is None:
            return
        try:
            pgid = os.getpgid(self.proc.pid)
        except ProcessLookupError:
            self.proc = None
            return
        for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait_s)
                # Children (Ray workers) may outlive the leader briefly: give them up to
                # 0.5 s to go, without waiting that long when they are already gone.
                if _group_gone(pgid, within_s=0.5):
                    break
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        self.proc = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
