"""Where and how a performance benchmark ran (command, machine, load, code commit), and its refusal to
measure on a busy machine.

Timings taken while other work shares the cores are noise (a committed throughput ratio
measured at load ~9 once said fedmm was faster than a plain loop). So the performance
benchmarks (``benchmarks/throughput.py``, ``overhead.py``, ``scale.py``) call
:func:`require_idle` before they measure: when the 1-minute load average exceeds the
number of cores they stop without writing anything, unless told ``--allow-busy``, and
then the result records that it was measured busy.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent


#: The exit status of a benchmark that refused to measure on a busy machine.
BUSY_EXIT = 3


class BusyMachineError(RuntimeError):
    """The machine is too loaded for a timing to mean anything; the message says what to do."""


def load_state(*, load_1min: float | None = None, cores: int | None = None) -> dict[str, Any]:
    """The 1-minute load average against the core count (both read here unless given)."""
    load = os.getloadavg()[0] if load_1min is None else load_1min
    count = (os.cpu_count() or 1) if cores is None else cores
    return {"load_1min": round(load, 2), "cores": count, "busy": load > count}


def require_idle(*, allow_busy: bool, load_1min: float | None = None,
                 cores: int | None = None) -> dict[str, Any]:
    """Return the load state; raise when the machine is busy and ``allow_busy`` is False.

    Raises:
        BusyMachineError: the load average exceeds the core count.
    """
    state = load_state(load_1min=load_1min, cores=cores)
    if state["busy"] and not allow_busy:
        raise BusyMachineError(
            f"The 1-minute load average is {state['load_1min']:g} on {state['cores']} cores; a "
            f"timing benchmark needs a load of at most the core count ({state['cores']}). Other "
            "work would be measured too, so nothing was measured or written. Fix: wait until the "
            "machine is idle (`uptime`), or pass --allow-busy to measure anyway (the result then "
            "records that the machine was busy).")
    return {**state, "allowed_busy": bool(state["busy"] and allow_busy)}


def idle_load(*, allow_busy: bool) -> dict[str, Any] | None:
    """:func:`require_idle` for a benchmark's ``main``: the load state, or None after saying
    on stderr why nothing will be measured (the caller then exits with :data:`BUSY_EXIT`)."""
    try:
        return require_idle(allow_busy=allow_busy)
    except BusyMachineError as err:
        print(err, file=sys.stderr)
        return None


#: Names the commit of a copy of the code that has no git history (a tree copied to a GPU
#: machine); used only where git cannot say, and marked as given in the result.
COMMIT_ENV = "FEDMM_CODE_COMMIT"


def code_commit() -> str:
    """The git commit of this checkout (``+dirty`` when tracked files have changes); in a copy
    without git history, ``$FEDMM_CODE_COMMIT`` marked as given, else ``unknown``."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        given = os.environ.get(COMMIT_ENV, "").strip()
        return f"{given} (given by {COMMIT_ENV}: no git checkout)" if given else "unknown"
    return sha + ("+dirty" if dirty else "")


def machine() -> dict[str, Any]:
    """The machine and software a result was measured with."""
    cuda = torch.cuda.is_available()
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "gpu_memory_gb": (round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
                          if cuda else None),
    }


def command(script: str, argv: Sequence[str] | None) -> str:
    """The command line that reproduces a result (``python benchmarks/<script> ...``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["python", f"benchmarks/{script}", *(shlex.quote(a) for a in args)])


def provenance(script: str, argv: Sequence[str] | None, *, load_before: dict[str, Any]) -> dict[str, Any]:
    """Every field a result file carries about how it was made (the load now and before)."""
    return {"command": command(script, argv), "machine": machine(), "code_commit": code_commit(),
            "load_before": load_before, "load_after": load_state()}
