"""Submits a fedmm run to a SuperLink with Flower's CLI, follows it, and reads its status.

Flower's ``flwr run --stream`` exits 0 even when the ServerApp crashed (FLOWER_NOTES.md
P2), so the outcome is always read back from ``flwr ls --run-id``.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from shared.app_bundle import stage_sources
from shared.config import RunConfig
from shared.flower_cli import flower_bin, flower_env
from shared.wire_keys import RUN_CONFIG_KEY

COMPLETED = "finished:completed"

__all__ = [
    "COMPLETED", "RunControlError", "RunStatus", "flower_bin", "flower_env",
    "latest_run_status", "run_status", "start_run", "started_run_id", "started_run_ids", "stop_run",
    "write_run_config",
]

_STARTED = re.compile(r"Successfully started run (\d+)")


class RunControlError(RuntimeError):
    """Flower's CLI could not be used as expected; the message holds its output."""


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
    app: Path,
    connection: str,
    run_config_file: Path,
    federation_config: str | None,
    flwr_home: Path,
    log_file: Path,
) -> subprocess.Popen[bytes]:
    """Start ``flwr run --stream`` of the app folder ``app`` in the background, its output
    going to ``log_file``.

    ``flwr run`` builds the bundle from a copy of only the files that go into it (under
    ``flwr_home``), so it does not walk the rest of the checkout; the bundle is the same.
    """
    app = stage_sources(app, flwr_home / "app-sources")
    cmd = [flower_bin("flwr"), "run", str(app), connection,
           "--run-config", str(run_config_file), "--stream"]
    if federation_config:
        cmd += ["--federation-config", federation_config]
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=flower_env(flwr_home),
                                cwd=str(app))


def _ls_runs(args: list[str], *, flwr_home: Path) -> list[dict[str, object]]:
    proc = subprocess.run([flower_bin("flwr"), "ls", *args, "--format", "json"],
                          capture_output=True, text=True, env=flower_env(flwr_home), timeout=60)
    try:
        runs: list[dict[str, object]] = json.loads(proc.stdout).get("runs", [])
    except json.JSONDecodeError as err:
        raise RunControlError(f"`flwr ls` did not answer JSON: {proc.stdout[-500:]}"
                              f"{proc.stderr[-500:]}") from err
    return runs


def _status(run: dict[str, object]) -> RunStatus:
    return RunStatus(str(run["run-id"]), str(run["status"]), str(run.get("status-details", "")))


def latest_run_status(*, connection: str, flwr_home: Path) -> RunStatus | None:
    """Status of the newest run on the SuperLink (None when it has none)."""
    runs = _ls_runs([connection], flwr_home=flwr_home)
    if not runs:
        return None
    return _status(max(runs, key=lambda r: str(r.get("pending-at", ""))))


def run_status(run_id: str, *, connection: str, flwr_home: Path) -> RunStatus | None:
    """Status of one run (None when the SuperLink does not know it)."""
    runs = _ls_runs([connection, "--run-id", run_id], flwr_home=flwr_home)
    return _status(runs[0]) if runs else None


def started_run_ids(log_file: Path, *, offset: int = 0) -> list[str]:
    """The run ids ``flwr run`` printed into ``log_file`` after byte ``offset``, oldest first."""
    try:
        with log_file.open("rb") as fh:
            fh.seek(offset)
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return _STARTED.findall(text)


def started_run_id(log_file: Path, *, offset: int = 0) -> str | None:
    """The first run id ``flwr run`` printed into ``log_file`` after byte ``offset``."""
    ids = started_run_ids(log_file, offset=offset)
    return ids[0] if ids else None


def stop_run(run_id: str, *, connection: str, flwr_home: Path) -> None:
    """Ask the SuperLink to stop a run (best effort)."""
    subprocess.run([flower_bin("flwr"), "stop", run_id, connection], capture_output=True,
                   env=flower_env(flwr_home), timeout=60, check=False)
