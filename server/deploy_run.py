"""``fedmm server run``: a pretraining run on the coordinator's SuperLink, followed to the end.

The run file holds RunConfig's sections only (read with ``shared.run_file``, the same
reader ``simulate`` uses); this module adds the output folder and the resume flag,
submits the app with ``flwr run`` (``server/run_control.py``), follows ``progress.json``
and ``metrics.json``, and reads the run's real status (``flwr run`` exits 0 on failures).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.atomic_files import read_json_object
from server.checkpoints import STATE_FILE, CheckpointStore
from server.deploy_config import CONNECTION, ServerDeployConfig
from server.metrics_log import METRICS_FILE
from server.protocol import PROGRESS_FILE
from server.run_control import (
    RunControlError,
    RunStatus,
    latest_run_status,
    run_status,
    start_run,
    started_run_id,
    started_run_ids,
    stop_run,
    write_run_config,
)
from server.superlink_daemon import write_connection
from shared.app_bundle import AppBundleError, app_dir, app_sha256
from shared.config import ConfigError, RunConfig
from shared.run_file import read_run_file

FLOWER_LOG = "flower.log"
RUN_CONFIG_TOML = "run_config.toml"
#: Sections that must not change when a run is resumed (they define what was trained).
_FROZEN_ON_RESUME = ("seed", "data", "pretext", "privacy")


class DeployRunError(RuntimeError):
    """The run failed or could not start; the message says where to look and what to do."""


@dataclass(frozen=True)
class DeployRunResult:
    out_dir: Path
    status: RunStatus
    seconds: float


def output_dir(server: ServerDeployConfig, run_file: Path, out: Path | None) -> Path:
    """``--out`` if given, else ``<runs_dir>/<run file name>`` (so ``--resume`` finds it)."""
    return (out if out is not None else server.paths.runs_dir / run_file.stem).expanduser().resolve()


def prepare_run_config(run_file: Path, *, out_dir: Path, resume: bool) -> RunConfig:
    """Read the run file and fill in what ``server run`` owns (output folder, resume).

    Raises:
        ConfigError: invalid run file; a new run into a folder that holds one; a resume
            without a checkpoint, or with settings that define the model changed.
    """
    cfg = read_run_file(run_file, owner="`fedmm server run` itself (use --out / --resume)")
    state = out_dir / STATE_FILE
    if resume:
        saved = CheckpointStore(out_dir).saved_config()
        if saved is None:
            raise ConfigError(f"--resume: {state} does not exist. Expected the output folder of an "
                              f"earlier run; fix: pass its --out, or drop --resume to start anew.")
        now = json.loads(cfg.to_json())
        changed = [k for k in _FROZEN_ON_RESUME if saved.get(k) != now.get(k)]
        if changed:
            raise ConfigError(
                f"--resume: {run_file} changes {changed} compared with the run in {out_dir}; a "
                "resumed run must keep them. Fix: restore them, or start a new run with --out."
            )
    elif state.exists():
        raise ConfigError(f"{out_dir} already holds a run ({state}). Fix: continue it with "
                          "--resume, or choose another --out.")
    return cfg.model_copy(update={"out_dir": out_dir, "resume": resume})


def describe_round(entry: dict[str, Any]) -> str:
    """One line per finished round: losses, sites, failures."""
    train, evaluate = entry.get("train", {}), entry.get("evaluate", {})

    def fmt(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else "n/a"
    failures = [f"{f.get('node')}: {f.get('reason')}" for f in train.get("failures", [])]
    kept = "" if train.get("aggregated") else f" (not aggregated: {train.get('reason', 'quorum missed')})"
    text = (f"round {entry.get('round')}: train loss {fmt(train.get('loss'))}, held-out loss "
            f"{fmt(evaluate.get('loss'))}, {len(train.get('sites', {}))} sites{kept}, "
            f"{entry.get('seconds', 0):.0f} s")
    return text + (f"; sites without a usable reply: {failures}" if failures else "")


def follow_run(proc: Any, *, out_dir: Path, echo: Callable[[str], None], poll_s: float = 2.0) -> None:
    """Echo phase changes and finished rounds until ``flwr run`` exits."""
    last_phase: tuple[Any, ...] = ()
    reported = {int(r["round"]) for r in read_json_object(out_dir / METRICS_FILE).get("rounds", [])}
    while True:
        running = proc.poll() is None
        prog = read_json_object(out_dir / PROGRESS_FILE)
        phase = (prog.get("phase"), prog.get("round"))
        if prog and phase != last_phase:
            last_phase = phase
            echo(f"{prog.get('phase')} (round {prog.get('round')}/{prog.get('rounds')})")
        for entry in read_json_object(out_dir / METRICS_FILE).get("rounds", []):
            evaluate = entry.get("evaluate", {})
            # A round is written once after training (then checkpointed) and again after
            # evaluation; report it when evaluated, or when the run is over.
            complete = bool(evaluate.get("sites") or evaluate.get("failures")) or not running
            if complete and int(entry["round"]) not in reported:
                reported.add(int(entry["round"]))
                echo(describe_round(entry))
        if not running:
            return
        time.sleep(poll_s)


def stop_unfinished_runs(log_file: Path, *, flwr_home: Path, echo: Callable[[str], None]) -> None:
    """Stop earlier runs of this output folder that the SuperLink still has as unfinished.

    After a crash of the coordinator, the SuperLink's database may still hold the old run
    as running (its ServerApp is gone); a resumed run must be the only one writing to the
    folder, and the sites should not keep serving the old run's queued messages.
    """
    for run_id in started_run_ids(log_file):
        try:
            status = run_status(run_id, connection=CONNECTION, flwr_home=flwr_home)
        except RunControlError:
            continue
        if status is not None and not status.status.startswith("finished"):
            echo(f"Stopping the earlier run {run_id} of this folder (still {status.status}).")
            stop_run(run_id, connection=CONNECTION, flwr_home=flwr_home)


def run_on_superlink(server: ServerDeployConfig, cfg: RunConfig, *, app: Path | None = None,
                     insecure: bool = False, echo: Callable[[str], None] = print) -> DeployRunResult:
    """Submit ``cfg`` to the coordinator's SuperLink, follow it, and return its status.

    Args:
        app: the Flower app folder to submit (default: this fedmm installation). Sites run
            it only if they approved its bundle's sha256, which is printed here.

    Raises:
        DeployRunError: the run could not start or did not complete; says where to look.
    """
    if cfg.out_dir is None:
        raise ValueError("cfg.out_dir must be set (use prepare_run_config)")
    started = time.time()
    out_dir = cfg.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    flwr_home = server.paths.flwr_home
    write_connection(server, insecure=insecure)
    run_config_file = write_run_config(cfg, out_dir / RUN_CONFIG_TOML)
    log_file = out_dir / FLOWER_LOG
    if cfg.resume:
        stop_unfinished_runs(log_file, flwr_home=flwr_home, echo=echo)
    offset = log_file.stat().st_size if log_file.exists() else 0
    app = app if app is not None else app_dir()
    try:
        digest = app_sha256(app)
    except AppBundleError as err:
        raise DeployRunError(str(err)) from err
    proc = start_run(app=app, connection=CONNECTION, run_config_file=run_config_file,
                     federation_config=None, flwr_home=flwr_home, log_file=log_file)
    echo(f"Submitted the run (app bundle sha256 {digest}; sites run only a bundle they "
         f"approved) to {server.superlink.control_address}; outputs in {out_dir}, Flower's "
         f"log in {log_file}")
    try:
        follow_run(proc, out_dir=out_dir, echo=echo)
    except KeyboardInterrupt:
        run_id = started_run_id(log_file, offset=offset)
        if run_id is not None:
            stop_run(run_id, connection=CONNECTION, flwr_home=flwr_home)
        proc.terminate()
        raise
    run_id = started_run_id(log_file, offset=offset)
    try:
        status = (run_status(run_id, connection=CONNECTION, flwr_home=flwr_home) if run_id
                  else latest_run_status(connection=CONNECTION, flwr_home=flwr_home))
    except (RunControlError, OSError) as err:
        raise DeployRunError(f"Cannot read the run's status from the SuperLink ({err}). Is it "
                             f"running? Finished rounds are checkpointed in {out_dir}: "
                             "`fedmm server run --resume` continues from the last one.") from err
    resume_hint = ("Finished rounds are checkpointed: `fedmm server run --config ... --resume` "
                   "(same --out) continues from the last one.")
    if run_id is None or status is None:
        tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-15:])
        raise DeployRunError(f"`flwr run` could not start the run. Its output ends with:\n{tail}")
    if not status.ok:
        details = f" ({status.details})" if status.details not in ("", "N/A") else ""
        raise DeployRunError(f"The run {status.run_id} ended {status.status}{details}. See "
                             f"{log_file} (ServerApp) and the sites' logs. {resume_hint}")
    return DeployRunResult(out_dir=out_dir, status=status, seconds=time.time() - started)
