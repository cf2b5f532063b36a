"""The task executor forks each task from a warm parent: imports paid once, nothing shared."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.process_alive import alive

ROOT = Path(__file__).resolve().parents[2]
#: A stand-in executor: a warm parent with ``email.mime.text`` imported, then one task
#: running ``probe`` (below), then it waits to be killed.
EXECUTOR = """
import sys, time
from pathlib import Path
from client.task_executor import launch_runner, start_warm_parent
from tests.client.test_task_executor import probe
ctx = start_warm_parent(("email.mime.text", "client.task_runner"))
proc = launch_runner(ctx, "token-7f3a", runtime_api_address="127.0.0.1:1", site_config=Path(sys.argv[1]),
                     target=probe)
proc.join(120)
print(proc.exitcode, flush=True)
time.sleep(600)
"""


def probe(*, token: str, runtime_api_address: str, site_config: Path, executor_pid: int) -> None:
    """A task that records what its process received and had imported when it started."""
    site_config.write_text(json.dumps({
        "token": token, "address": runtime_api_address, "executor_pid": executor_pid,
        "pid": os.getpid(), "parent": os.getppid(),
        "warm_module_loaded": "email.mime.text" in sys.modules,
        "client_app_loaded": "client.app" in sys.modules,
        "cmdline": Path("/proc/self/cmdline").read_bytes().decode(errors="replace")}))
    sys.exit(3)


def test_a_task_is_forked_from_the_warm_parent_and_it_ends_with_the_executor(tmp_path: Path) -> None:
    record = tmp_path / "task.json"
    executor = subprocess.Popen([sys.executable, "-c", EXECUTOR, str(record)], cwd=ROOT,
                                stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert executor.stdout is not None
        assert executor.stdout.readline().strip() == "3"  # the task's exit code came back
        task = json.loads(record.read_text())
        assert task["token"] == "token-7f3a" and task["address"] == "127.0.0.1:1"
        assert task["executor_pid"] == executor.pid
        # forked from the warm parent (a process of its own, not the executor) with the
        # warm imports already done, and without the ClientApp (the bundle's code)
        warm_parent = task["parent"]
        assert warm_parent not in (executor.pid, task["pid"])
        assert task["warm_module_loaded"] and not task["client_app_loaded"]
        assert "token-7f3a" not in task["cmdline"]  # other local users can read command lines
        assert alive(warm_parent)
        os.kill(executor.pid, signal.SIGKILL)  # the OOM killer, say
        executor.wait(timeout=10)
        deadline = time.monotonic() + 20
        while alive(warm_parent) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(warm_parent), "the warm parent outlived its executor"
    finally:
        if executor.poll() is None:
            os.killpg(executor.pid, signal.SIGKILL)
            executor.wait(timeout=10)
