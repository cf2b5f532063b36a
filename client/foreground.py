"""A child program in the foreground: output to console and log, SIGTERM passed on, no leftovers.

What a service manager expects from a daemon (systemd, ``docker stop``): stay in the
foreground, log to stdout and a file, stop cleanly on SIGTERM or Ctrl-C. Flower's helpers
run in sessions of their own, so after the child exits everything still carrying its
private ``FLWR_HOME`` is stopped too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, TextIO

from shared.flower_cli import stop_processes_using_home

#: Seconds a child gets to stop after SIGTERM before its process group is killed.
STOP_GRACE_S = 20.0


@dataclass
class StopRequest:
    """Set by SIGTERM/SIGINT while installed; passes SIGTERM on to the running child."""

    event: threading.Event = field(default_factory=threading.Event)
    child: subprocess.Popen[bytes] | None = None

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first = not self.event.is_set()
        self.event.set()
        if first:
            self.forward()

    def forward(self) -> None:
        """SIGTERM the child's process group (no-op when no child runs)."""
        if self.child is not None and self.child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.child.pid, signal.SIGTERM)

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


def _pump(stream: IO[bytes], log: TextIO, console: TextIO, last: deque[str]) -> None:
    """Copy the child's output to the log file and the console, line by line."""
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", errors="replace")
        log.write(line)
        log.flush()
        console.write(line)
        last.append(line.rstrip())


def _stop_group(pid: int) -> None:
    """SIGTERM, then SIGKILL, whatever is left of the child's process group."""
    for sig, wait_s in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


def run_foreground(cmd: list[str], *, env: Mapping[str, str], cwd: Path, log: TextIO,
                   console: TextIO, stop: StopRequest, flwr_home: Path) -> tuple[int, list[str]]:
    """Run ``cmd`` until it exits (or ``stop`` makes it exit); return its code and last lines.

    The child gets its own session. It is reaped as soon as it exits: Flower's helpers
    watch their parent's pid and would take an unreaped zombie for a live parent (and they
    may hold the output pipe open, so the end of output is not awaited).
    """
    last: deque[str] = deque(maxlen=40)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(env),
                            cwd=str(cwd), start_new_session=True)
    stream = proc.stdout
    if stream is None:  # cannot happen with stdout=PIPE; keeps the type checker honest
        raise RuntimeError(f"{cmd[0]} was started without an output pipe")
    pump = threading.Thread(target=_pump, args=(stream, log, console, last), daemon=True)
    pump.start()
    stop.child = proc
    if stop.requested:  # a signal arrived before the child was known
        stop.forward()
    try:
        while True:
            try:
                code = proc.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                continue
    finally:
        stop.child = None
        _stop_group(proc.pid)
        stop_processes_using_home(flwr_home)
    pump.join(timeout=5.0)
    return code, list(last)
