"""How fedmm starts Flower's own command-line programs: their environment and their paths.

Both sides start Flower programs (the coordinator ``flower-superlink`` and ``flwr``, a site
``flower-supernode``), and both need the same environment, so it is defined once here.
Nothing here imports ``flwr``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import sys
import time
from pathlib import Path


class FlowerCommandNotFoundError(RuntimeError):
    """A Flower console script is not installed where fedmm looks for it."""


def flower_env(flwr_home: Path) -> dict[str, str]:
    """Environment for Flower's CLI and servers: private home, no telemetry, no uv sync."""
    env = dict(os.environ)
    env.update(
        FLWR_HOME=str(flwr_home),
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",
        # Otherwise every run re-installs the app's dependencies, torch included (P1).
        FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
        RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO="0",
        RAY_DEDUP_LOGS="0",
        PYTHONUNBUFFERED="1",
        # The SuperLink and SuperNode spawn `flower-superexec`, `flwr-serverapp`,
        # `flwr-clientapp`, ... by name: put this environment's scripts first even when it
        # is not activated.
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
    )
    return env


def flower_bin(name: str) -> str:
    """Path of a Flower console script, preferring the one beside this Python."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise FlowerCommandNotFoundError(
            f"Cannot find Flower's {name!r} command. Expected it beside {sys.executable} or on "
            "PATH; install fedmm's dependencies (`make setup`)."
        )
    return found


def check_superlink_address(value: str) -> str:
    """Validate a SuperLink address ``host:port`` (IPv6 in brackets) and return it.

    Raises:
        ValueError: not ``host:port``; the message shows an example.
    """
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port such as fl.example.org:9093, got {value!r}")
    if host.startswith("["):
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError as err:
            raise ValueError(f"expected an IPv6 address in brackets such as [::1]:9093, got "
                             f"{value!r}") from err
    elif ":" in host:
        raise ValueError(f"expected an IPv6 host in brackets such as [::1]:9093, got {value!r}")
    return value


def processes_using_home(flwr_home: Path, *, nested: bool = False) -> list[int]:
    """Ids of live processes whose environment has ``FLWR_HOME=<flwr_home>`` (Linux /proc);
    with ``nested``, also those whose ``FLWR_HOME`` lies anywhere under ``flwr_home``.

    Flower's servers start helpers in new sessions (``flower-superexec``, ``flwr-serverapp``,
    ``flwr-clientapp``), so a process group does not hold them all; the private
    ``FLWR_HOME`` every one of them inherits does. Empty where /proc is not available.
    """
    marker = f"FLWR_HOME={flwr_home}".encode()

    def matches(var: bytes) -> bool:
        return var == marker or (nested and var.startswith(marker + b"/"))
    found = []
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # gone, or not ours to read
        if state != "Z" and any(matches(var) for var in env):
            found.append(int(entry.name))
    return sorted(found)


def stop_processes_using_home(flwr_home: Path, *, grace_s: float = 10.0,
                              nested: bool = False) -> list[int]:
    """SIGTERM every process carrying ``flwr_home`` (``nested``: or a home under it), then
    SIGKILL what is left after ``grace_s``; return the ids that were found."""
    pids = processes_using_home(flwr_home, nested=nested)
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        alive = processes_using_home(flwr_home, nested=nested)
        for pid in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while alive and time.monotonic() < deadline:
            time.sleep(0.2)
            alive = processes_using_home(flwr_home, nested=nested)
        if not alive:
            break
    return pids
