"""A throw-away local Ray cluster for tests: `ray start --head --block` on 127.0.0.1, in its own
process group with its own temp folder and free ports, stopped by that group (never `ray stop`,
which would stop every Ray on the machine)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from simulations.superlink import free_port


@contextlib.contextmanager
def local_ray_cluster(*, num_cpus: int = 2, startup_timeout_s: float = 60.0) -> Iterator[tuple[str, Path]]:
    """Yield (address, temp folder) of a one-node Ray cluster; always stopped on exit."""
    ray = Path(sys.executable).parent / "ray"
    temp = Path(tempfile.mkdtemp(prefix="fr", dir="/tmp"))  # short: Ray's socket paths are limited
    port = free_port()
    ports = {flag: str(free_port()) for flag in (
        "--object-manager-port", "--node-manager-port", "--ray-client-server-port",
        "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
        "--runtime-env-agent-port", "--metrics-export-port")}
    cmd = [str(ray), "start", "--head", "--block", "--port", str(port), "--node-ip-address",
           "127.0.0.1", "--num-cpus", str(num_cpus), "--include-dashboard=false",
           "--disable-usage-stats", "--temp-dir", str(temp),
           *[x for flag, value in ports.items() for x in (flag, value)]]
    log = (temp / "ray-start.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"`ray start --head` exited ({proc.returncode}); see "
                                   f"{temp / 'ray-start.log'}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"Ray's head did not listen on 127.0.0.1:{port} within "
                                   f"{startup_timeout_s:.0f} s; see {temp / 'ray-start.log'}")
            time.sleep(0.2)
        yield f"127.0.0.1:{port}", temp
    finally:
        for sig, wait_s in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=wait_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
