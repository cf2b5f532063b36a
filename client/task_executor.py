"""fedmm's task executor at a site: runs each ClientApp task of the SuperNode in the verifying runner.

The site's SuperNode runs with ``--isolation process`` (Flower's mode for an external
executor) and ``--superexec-auth-secret-file``: only a process holding the site's secret
can acquire its tasks from the local Runtime API. This loop is that process, in place of
Flower's ``flower-superexec``: for each task it starts ``client/task_runner.py``, which
runs the task only if the site approved the app bundle.

Each task still gets a process of its own, but it is forked from a warm parent instead of
a new interpreter: Python's forkserver, started once with the site's own heavy libraries
(torch, MONAI: about 8 s of imports, more than a small task's own work) already imported
(``WARM_MODULES``). That parent never runs a task, and nothing of the app bundle is in it,
so every task starts from the same clean state, and the bundle's code is still imported
only after the runner has verified it. The token reaches the task in the pickled process
arguments over a private pipe, not on a command line, which other local users can read.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import signal
from collections.abc import Callable
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from pathlib import Path

from flwr.proto.runtime_pb2 import AcquireTaskRequest
from flwr.supercore.constant import TaskType
from flwr.supercore.interceptors import RuntimeVersionHttpInterceptor, SuperExecAuthHttpInterceptor
from flwr.supercore.retry import make_simple_http_retry_invoker
from flwr.supercore.runtime import RuntimeHttpClient

from client.site_logging import configure_site_logging
from client.task_runner import run_forked
from shared.supervisor import StopRequest

log = logging.getLogger("fedmm.site.executor")
#: The Runtime API method the shared secret protects (as in Flower's own SuperExec).
_PROTECTED = frozenset({"/flwr.proto.Runtime/AcquireTask"})
POLL_S = 0.5
#: Imported once by the warm parent the task processes are forked from: third-party
#: libraries of the site's own installation and the verifying runner, never the bundle's
#: code (the ClientApp, ``client.app``, is imported per task from the approved bundle).
WARM_MODULES = ("torch", "monai", "client.task_runner")
#: How long a stopping executor waits for a running task to end after SIGTERM.
STOP_WAIT_S = 10.0
TaskTarget = Callable[..., None]


def start_warm_parent(modules: tuple[str, ...] = WARM_MODULES) -> ForkServerContext:
    """Start the forkserver the task processes are forked from, with ``modules`` imported.

    It starts now, so the imports run while the site waits for its first task. It exits by
    itself when this process ends, however it ends.
    """
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(modules))
    multiprocessing.forkserver.ensure_running()
    return ctx


def launch_runner(ctx: ForkServerContext, token: str, *, runtime_api_address: str,
                  site_config: Path, target: TaskTarget = run_forked) -> BaseProcess:
    """Fork a process from the warm parent that runs one task in the verifying runner."""
    proc = ctx.Process(target=target, name="fedmm-task", kwargs={
        "token": token, "runtime_api_address": runtime_api_address,
        "site_config": site_config, "executor_pid": os.getpid()})
    proc.start()
    return proc


def stop_runners(running: list[BaseProcess]) -> None:
    """SIGTERM the running tasks and wait for them (SIGKILL after ``STOP_WAIT_S``)."""
    for proc in running:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
    for proc in running:
        proc.join(STOP_WAIT_S)
        if proc.is_alive():
            proc.kill()
            proc.join(1.0)


def serve(*, runtime_api_address: str, secret: bytes, site_config: Path, stop: StopRequest) -> None:
    """Acquire ClientApp tasks and start a runner for each until ``stop`` is set."""
    client = RuntimeHttpClient.from_server_address(
        server_address=runtime_api_address, insecure=True, root_certificates=None,
        interceptors=[RuntimeVersionHttpInterceptor(component_name="SuperExec"),
                      SuperExecAuthHttpInterceptor(master_secret=secret, protected_methods=_PROTECTED)],
        retry_invoker=make_simple_http_retry_invoker())
    running: list[BaseProcess] = []
    ctx = start_warm_parent()
    log.info("fedmm task executor: waiting for tasks from the SuperNode at %s", runtime_api_address)
    try:
        while not stop.requested:
            res = client.AcquireTask(AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP],
                                                        agentapp_fab_hashes=[]))
            if res.HasField("task") and res.token:
                running.append(launch_runner(ctx, res.token, runtime_api_address=runtime_api_address,
                                             site_config=site_config))
            running = [p for p in running if p.is_alive()]
            stop.wait(POLL_S)
    finally:
        client.close()
        stop_runners(running)


def main(argv: list[str] | None = None) -> None:
    """``python -m client.task_executor``: started by ``fedmm site start``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime-api-address", required=True)
    parser.add_argument("--secret-file", required=True, type=Path)
    parser.add_argument("--site-config", required=True, type=Path)
    args = parser.parse_args(argv)
    configure_site_logging()
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
