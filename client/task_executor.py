"""fedmm's task executor at a site: runs each ClientApp task of the SuperNode in the verifying runner.

The site's SuperNode runs with ``--isolation process`` (Flower's mode for an external
executor) and ``--superexec-auth-secret-file``: only a process holding the site's secret
can acquire its tasks from the local Runtime API. This loop is that process, in place of
Flower's ``flower-superexec``: for each task it starts ``client/task_runner.py``, which
runs the task only if the site approved the app bundle. The token goes to the runner on
its standard input (not its command line, which other local users can read).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from flwr.proto.runtime_pb2 import AcquireTaskRequest
from flwr.supercore.constant import TaskType
from flwr.supercore.interceptors import RuntimeVersionHttpInterceptor, SuperExecAuthHttpInterceptor
from flwr.supercore.retry import make_simple_http_retry_invoker
from flwr.supercore.runtime import RuntimeHttpClient

from shared.supervisor import StopRequest, die_with_parent

log = logging.getLogger("fedmm.site.executor")
#: The Runtime API method the shared secret protects (as in Flower's own SuperExec).
_PROTECTED = frozenset({"/flwr.proto.Runtime/AcquireTask"})
POLL_S = 0.5


def runner_command(*, runtime_api_address: str, site_config: Path) -> list[str]:
    """The command that runs one task in fedmm's verifying runner."""
    return [sys.executable, "-m", "client.task_runner", "--runtime-api-address", runtime_api_address,
            "--site-config", str(site_config), "--parent-pid", str(os.getpid())]


def launch_runner(token: str, *, runtime_api_address: str, site_config: Path) -> subprocess.Popen[bytes]:
    """Start the runner for one task, handing it the task's token on standard input."""
    proc = subprocess.Popen(runner_command(runtime_api_address=runtime_api_address,
                                           site_config=site_config),
                            stdin=subprocess.PIPE, preexec_fn=die_with_parent())
    if proc.stdin is not None:
        proc.stdin.write(token.encode() + b"\n")
        proc.stdin.close()
    return proc


def serve(*, runtime_api_address: str, secret: bytes, site_config: Path, stop: StopRequest) -> None:
    """Acquire ClientApp tasks and start a runner for each until ``stop`` is set."""
    client = RuntimeHttpClient.from_server_address(
        server_address=runtime_api_address, insecure=True, root_certificates=None,
        interceptors=[RuntimeVersionHttpInterceptor(component_name="SuperExec"),
                      SuperExecAuthHttpInterceptor(master_secret=secret, protected_methods=_PROTECTED)],
        retry_invoker=make_simple_http_retry_invoker())
    running: list[subprocess.Popen[bytes]] = []
    log.info("fedmm task executor: waiting for tasks from the SuperNode at %s", runtime_api_address)
    try:
        while not stop.requested:
            res = client.AcquireTask(AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP],
                                                        agentapp_fab_hashes=[]))
            if res.HasField("task") and res.token:
                running.append(launch_runner(res.token, runtime_api_address=runtime_api_address,
                                             site_config=site_config))
            running = [p for p in running if p.poll() is None]
            stop.wait(POLL_S)
    finally:
        client.close()
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        for proc in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)


def main(argv: list[str] | None = None) -> None:
    """``python -m client.task_executor``: started by ``fedmm site start``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime-api-address", required=True)
    parser.add_argument("--secret-file", required=True, type=Path)
    parser.add_argument("--site-config", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = StopRequest()

    def leave(signum: int, frame: object) -> None:
        # Raise, so a call blocked on the SuperNode (or retrying it) ends now and the
        # runners are stopped on the way out.
        stop.request()
        raise SystemExit(0)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, leave)
    serve(runtime_api_address=args.runtime_api_address, secret=args.secret_file.read_bytes(),
          site_config=args.site_config.resolve(), stop=stop)


if __name__ == "__main__":
    main()
