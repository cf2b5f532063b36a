"""Long-running children in the foreground: one log each, SIGTERM passed on, no leftovers.

What a service manager expects from a daemon (systemd, ``docker stop``): stay in the
foreground, log to stdout and files, stop cleanly on SIGTERM or Ctrl-C. Both daemons of
fedmm run several Flower programs this way: the coordinator a SuperLink, a SuperExec and
the reverse proxy; a site a SuperNode and fedmm's task executor. If one of them ends, the
others are stopped too, so a half-alive daemon never lingers.

A child also dies with the daemon: each is started with Linux's parent-death signal
(SIGTERM), so a daemon killed with SIGKILL (or by the OOM killer) does not leave its
SuperNode connecting and training on its own. Flower's helpers run in sessions of their
own, so after the children end everything still carrying the private ``FLWR_HOME`` is
stopped as well.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, TextIO

from shared.flower_cli import stop_processes_using_home

#: Seconds children get to stop after SIGTERM before their process groups are killed.
STOP_GRACE_S = 20.0
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


@dataclass
class StopRequest:
    """Set by SIGTERM/SIGINT while installed (or by :meth:`request`)."""

    event: threading.Event = field(default_factory=threading.Event)

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def request(self) -> None:
        self.event.set()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.event.set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True as soon as a stop is requested."""
        return self.event.wait(seconds)

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Handle SIGTERM and SIGINT for the duration (the old handlers come back after)."""
        old = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield self
        finally:
            for s, h in old.items():
                signal.signal(s, h)


@dataclass(frozen=True)
class Child:
    """One program to run.

    Attributes:
        name: what logs and messages call it (e.g. ``"supernode"``).
        cmd: its argument list.
        log_file: a file of its own that receives its output (appended); without one its
            output goes to the daemon's log (if any). The console always gets every line.
        ready: returns True once the child serves (e.g. its port accepts connections); the
            next child starts only then. None: start the next one at once.
        ready_line: alternatively, the child is ready once it prints a line containing this.
        ready_timeout_s: how long to wait for ``ready`` / ``ready_line``.
    """

    name: str
    cmd: list[str]
    log_file: Path | None = None
    ready: Callable[[], bool] | None = None
    ready_line: str | None = None
    ready_timeout_s: float = 120.0


@dataclass(frozen=True)
class Ended:
    """Why :func:`run_children` returned.

    Attributes:
        name: the child that ended first ("" when a stop request came first).
        code: its exit code (0 after a stop request).
        last_lines: its last lines of output, to explain the exit.
        not_ready: it was still running but never became ready (and was stopped).
    """

    name: str
    code: int
    last_lines: list[str]
    not_ready: bool = False


def die_with_parent() -> Callable[[], None]:
    """A ``preexec_fn`` giving the child SIGTERM when this process dies (Linux), whatever
    kills it; a no-op elsewhere."""
    parent = os.getpid()

    def preexec() -> None:
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)
    return preexec


def _pump(stream: IO[bytes], sinks: Sequence[TextIO], last: deque[str],
          watch: tuple[str, threading.Event] | None) -> None:
    """Copy a child's output to its sinks, line by line; set the event of ``watch`` when a
    line contains its text."""
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", errors="replace")
        for sink in sinks:
            sink.write(line)
            sink.flush()
        last.append(line.rstrip())
        if watch is not None and watch[0] in line:
            watch[1].set()


def _stop_groups(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGTERM, then SIGKILL, whatever is left of the children's process groups."""
    for sig, wait_s in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 5.0)):
        for proc in procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and any(_group_alive(p) for p in procs):
            time.sleep(0.1)


def _group_alive(proc: subprocess.Popen[bytes]) -> bool:
    proc.poll()  # reap the leader: a zombie still counts as a member of its group
    try:
        os.killpg(proc.pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _wait_ready(child: Child, proc: subprocess.Popen[bytes], stop: StopRequest,
                seen: threading.Event) -> bool:
    """Wait until ``child`` is ready; False when it exited, timed out or a stop came."""
    if child.ready is None and child.ready_line is None:
        return True
    deadline = time.monotonic() + child.ready_timeout_s
    while proc.poll() is None and not stop.requested and time.monotonic() < deadline:
        if (child.ready is None or child.ready()) and (child.ready_line is None or seen.is_set()):
            return True
        stop.wait(0.1)
    return False


def run_children(children: Sequence[Child], *, env: Mapping[str, str], cwd: Path,
                 log: TextIO | None, console: TextIO, stop: StopRequest,
                 flwr_home: Path | None = None) -> Ended:
    """Start ``children`` in order and run until one ends or a stop is requested.

    Each child gets a session of its own and the parent-death signal. When one ends (or
    ``stop`` is set), every child is sent SIGTERM, latest first, and killed after
    :data:`STOP_GRACE_S`; then every process carrying ``FLWR_HOME=flwr_home`` is stopped.
    Children are reaped as soon as they exit: Flower's helpers watch their parent's pid and
    would take an unreaped zombie for a live parent.
    """
    procs: list[tuple[Child, subprocess.Popen[bytes], deque[str]]] = []
    files: list[TextIO] = []
    pumps: list[threading.Thread] = []
    ended: Ended | None = None
    try:
        for child in children:
            if stop.requested:
                break
            sinks: list[TextIO] = [console]
            if child.log_file is not None:
                child.log_file.parent.mkdir(parents=True, exist_ok=True)
                own = child.log_file.open("a", encoding="utf-8", errors="replace")
                files.append(own)
                sinks.append(own)
            elif log is not None:
                sinks.append(log)
            proc = subprocess.Popen(child.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    env=dict(env), cwd=str(cwd), start_new_session=True,
                                    preexec_fn=die_with_parent())
            last: deque[str] = deque(maxlen=40)
            if proc.stdout is None:  # cannot happen with stdout=PIPE; keeps the type checker honest
                raise RuntimeError(f"{child.cmd[0]} was started without an output pipe")
            seen = threading.Event()
            watch = (child.ready_line, seen) if child.ready_line else None
            pump = threading.Thread(target=_pump, args=(proc.stdout, sinks, last, watch), daemon=True)
            pump.start()
            pumps.append(pump)
            procs.append((child, proc, last))
            if not _wait_ready(child, proc, stop, seen) and not stop.requested:
                code = proc.poll()
                ended = Ended(child.name, code if code is not None else -1, [], not_ready=code is None)
                break
        while ended is None and not stop.requested:
            for child, proc, last in procs:
                code = proc.poll()
                if code is not None:
                    ended = Ended(child.name, code, list(last))
                    break
            else:
                stop.wait(0.2)
    finally:
        _stop_groups([proc for _, proc, _ in reversed(procs)])
        for _, proc, _ in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5.0)
        if flwr_home is not None:
            stop_processes_using_home(flwr_home)
        for pump in pumps:
            pump.join(timeout=5.0)
        for fh in files:
            fh.close()
    if ended is None:  # a stop request
        return Ended("", 0, [])
    # The child that ended may have printed its last words after the poll: take them all.
    child, _, last = next(p for p in procs if p[0].name == ended.name)
    return Ended(ended.name, ended.code, list(last), not_ready=ended.not_ready)


def accepts_connections(host: str, port: int) -> Callable[[], bool]:
    """A readiness check: True once ``host:port`` accepts a TCP connection."""
    import socket

    def check() -> bool:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.settimeout(1.0)
            return sock.connect_ex((host, port)) == 0
    return check
