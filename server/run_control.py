"""Submits a fedmm run to a SuperLink with Flower's CLI, follows it, and reads its status.

Flower's ``flwr run --stream`` exits 0 even when the ServerApp crashed (FLOWER_NOTES.md
P2), so the outcome is always read back from ``flwr ls --run-id``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from shared.config import RunConfig
from shared.keys import RUN_CONFIG_KEY

COMPLETED = "finished:completed"


class RunControlError(RuntimeError):
    """Flower's CLI could not be used as expected; the message holds its output."""


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
        # The SuperLink and SuperNode spawn `flower-superexec`, `flwr-simulation`, ... by
        # name: put this environment's scripts first even when it is not activated.
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
        raise RunControlError(
            f"Cannot find Flower's {name!r} command. Expected it beside {sys.executable} or on "
            "PATH; install fedmm's dependencies (`make setup`)."
        )
    return found


def app_dir() -> Path:
    """The Flower app folder: the checkout holding fedmm's pyproject.toml."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file():
        raise RunControlError(
            f"Expected fedmm's pyproject.toml in {root} (the Flower app folder), found none. "
            "Install fedmm from a checkout with `pip install -e .` so the app can be built."
        )
    return root


def write_run_config(cfg: RunConfig, path: Path) -> Path:
    """Write the TOML file ``flwr run --run-config`` reads (the RunConfig as one JSON value)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps({RUN_CONFIG_KEY: cfg.to_json()}))
    return path


@dataclass(frozen=True)
class RunStatus:
    run_id: str
    status: str
    details: str

    @property
    def ok(self) -> bool:
        return self.status == COMPLETED


def start_run(
    *,
    connection: str,
    run_config_file: Path,
    federation_config: str | None,
    flwr_home: Path,
    log_file: Path,
) -> subprocess.Popen[bytes]:
    """Start ``flwr run --stream`` in the background, its output going to ``log_file``."""
    cmd = [flower_bin("flwr"), "run", str(app_dir()), connection,
           "--run-config", str(run_config_file), "--stream"]
    if federation_config:
        cmd += ["--federation-config", federation_config]
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=flower_env(flwr_home),
                                cwd=str(app_dir()))


def latest_run_status(*, connection: str, flwr_home: Path) -> RunStatus | None:
    """Status of the newest run on the SuperLink (None when it has none)."""
    proc = subprocess.run(
        [flower_bin("flwr"), "ls", connection, "--format", "json"],
        capture_output=True, text=True, env=flower_env(flwr_home), timeout=60,
    )
    try:
        runs = json.loads(proc.stdout).get("runs", [])
    except json.JSONDecodeError as err:
        raise RunControlError(f"`flwr ls` did not answer JSON: {proc.stdout[-500:]}"
                              f"{proc.stderr[-500:]}") from err
    if not runs:
        return None
    newest = max(runs, key=lambda r: r.get("pending-at", ""))
    return RunStatus(str(newest["run-id"]), newest["status"], str(newest.get("status-details", "")))


def stop_run(run_id: str, *, connection: str, flwr_home: Path) -> None:
    """Ask the SuperLink to stop a run (best effort)."""
    subprocess.run([flower_bin("flwr"), "stop", run_id, connection], capture_output=True,
                   env=flower_env(flwr_home), timeout=60, check=False)
