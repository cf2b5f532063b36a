"""Children in the foreground: one log each, stop passed on, the others stopped, none outlives the daemon."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from shared.flower_cli import processes_using_home
from shared.supervisor import Child, StopRequest, accepts_connections, run_children
from tests.process_alive import alive

PY = sys.executable


def run(children: list[Child], tmp_path: Path, stop: StopRequest) -> tuple[object, str, str]:
    home = tmp_path / "flwr-home"
    env = {**os.environ, "FLWR_HOME": str(home)}
    log, console = io.StringIO(), io.StringIO()
    ended = run_children(children, env=env, cwd=tmp_path, log=log, console=console, stop=stop,
                         flwr_home=home)
    return ended, log.getvalue(), console.getvalue()


def py(name: str, code: str, **kwargs: object) -> Child:
    return Child(name, [PY, "-c", code], **kwargs)  # type: ignore[arg-type]


def test_the_first_child_to_end_stops_the_others_and_is_reported(tmp_path: Path) -> None:
    ended, log, console = run([py("server", "import time; print('serving', flush=True); time.sleep(60)"),
                               py("helper", "print('bye'); raise SystemExit(3)")], tmp_path, StopRequest())
    assert ended.name == "helper" and ended.code == 3 and ended.last_lines == ["bye"]
    assert "serving" in log and "bye" in log and "serving" in console
    assert processes_using_home(tmp_path / "flwr-home") == []


def test_a_child_with_a_log_file_writes_there_and_not_to_the_daemon_log(tmp_path: Path) -> None:
    own = tmp_path / "logs" / "helper.log"
    ended, log, console = run([py("helper", "print('only mine'); raise SystemExit(0)", log_file=own)],
                              tmp_path, StopRequest())
    assert ended.name == "helper" and own.read_text() == "only mine\n"
    assert "only mine" not in log and "only mine" in console


def test_a_stop_request_terminates_every_child_and_what_they_started(tmp_path: Path) -> None:
    # A child starts a helper in a session of its own, as Flower's SuperNode does.
    code = ("import subprocess, sys, time; "
            f"subprocess.Popen([{PY!r}, '-c', 'import time; time.sleep(120)'], start_new_session=True); "
            "print('up', flush=True); time.sleep(120)")
    stop = StopRequest()
    timer = threading.Timer(3.0, stop._handle, args=(signal.SIGTERM, None))
    timer.start()
    try:
        ended, log, _ = run([py("a", code), py("b", "import time; time.sleep(120)")], tmp_path, stop)
    finally:
        timer.cancel()
    assert stop.requested and ended.name == "" and "up" in log
    assert processes_using_home(tmp_path / "flwr-home") == []


def test_the_next_child_starts_only_once_the_previous_one_is_ready(tmp_path: Path) -> None:
    flag = tmp_path / "ready"
    first = py("first", f"import pathlib, time; time.sleep(1.5); pathlib.Path({str(flag)!r}).touch(); "
               "time.sleep(60)", ready=flag.exists)
    second = py("second", f"import pathlib; print(pathlib.Path({str(flag)!r}).exists()); raise SystemExit(0)")
    ended, _, _ = run([first, second], tmp_path, StopRequest())
    assert ended.name == "second" and ended.last_lines == ["True"]


def test_a_child_that_never_becomes_ready_is_stopped_and_reported(tmp_path: Path) -> None:
    slow = py("slow", "import time; time.sleep(60)", ready=lambda: False, ready_timeout_s=1.0)
    never = py("never", "print('must not start')")
    ended, log, _ = run([slow, never], tmp_path, StopRequest())
    assert ended.name == "slow" and ended.not_ready and "must not start" not in log


def test_accepts_connections_sees_a_listening_port() -> None:
    import socket
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        assert not accepts_connections("127.0.0.1", port)()
        server.listen()
        assert accepts_connections("127.0.0.1", port)()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
def test_children_die_with_a_daemon_killed_by_sigkill(tmp_path: Path) -> None:
    # A daemon process running the supervisor; its children write their pids, then the
    # daemon is SIGKILLed (no handler, no cleanup can run).
    pids = tmp_path / "pids"
    daemon_code = f"""
import io, os, sys
from pathlib import Path
from shared.supervisor import Child, StopRequest, run_children
child = ("import os, time; open({str(pids)!r}, 'a').write(str(os.getpid()) + '\\\\n'); "
         "time.sleep(120)")
run_children([Child('a', [sys.executable, '-c', child]), Child('b', [sys.executable, '-c', child])],
             env=dict(os.environ), cwd=Path({str(tmp_path)!r}), log=io.StringIO(), console=io.StringIO(),
             stop=StopRequest())
"""
    daemon = subprocess.Popen([PY, "-c", daemon_code], cwd=Path(__file__).resolve().parents[2])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not pids.exists() or len(pids.read_text().split()) < 2):
        time.sleep(0.1)
    children = [int(p) for p in pids.read_text().split()]
    assert len(children) == 2 and all(alive(p) for p in children)
    daemon.kill()
    daemon.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(p) for p in children):
        time.sleep(0.1)
    assert not any(alive(p) for p in children)


def test_a_child_is_ready_once_it_prints_the_ready_line(tmp_path: Path) -> None:
    first = py("first", "import time; print('starting', flush=True); time.sleep(1); "
               "print('SuperNode ID: 42', flush=True); time.sleep(60)", ready_line="SuperNode ID:")
    second = py("second", "print('second ran'); raise SystemExit(0)")
    ended, log, _ = run([first, second], tmp_path, StopRequest())
    assert ended.name == "second" and log.index("SuperNode ID: 42") < log.index("second ran")
    refused = py("refused", "print('Failed to activate'); raise SystemExit(1)", ready_line="SuperNode ID:")
    ended, log, _ = run([refused, py("never", "print('must not start')")], tmp_path, StopRequest())
    assert ended.name == "refused" and ended.code == 1 and "must not start" not in log
