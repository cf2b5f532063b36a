"""`simulate` (and `fedmm simulate`): a federation of virtual sites on Flower's simulation engine.

torch, MONAI and Ray are imported when the command runs, not when it is loaded, so that
`simulate --help` answers in about a second.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any, get_args

import typer
from rich.console import Console

from server.tracking import TrackingError, check_tracking
from shared.config import ConfigError, StrategyName, pretext_task_names

console = Console()
err_console = Console(stderr=True)


def with_strategy(raw: dict[str, Any], name: str) -> dict[str, Any]:
    """``raw`` with ``--strategy NAME``: the scenario's ``[federation.strategy]`` table is kept
    when it configures that same strategy, and replaced when it configures another one
    (whose settings the named strategy would refuse)."""
    federation = dict(raw.get("federation") or {})
    current = federation.get("strategy")
    current_name = current if isinstance(current, str) else (
        current.get("name", "fedavg") if isinstance(current, dict) else None)
    if not (isinstance(current, dict) and current_name == name):
        federation["strategy"] = {"name": name}
    return {**raw, "federation": federation}


def _overrides(*, sites: int | None, rounds: int | None, local_steps: int | None,
               pretext: str | None, data_root: Path | None, seed: int | None,
               subjects_per_site: int | None, mlflow: str | None = None) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    if mlflow is not None:
        raw["tracking"] = {"mlflow_uri": mlflow}
    if sites is not None:
        raw.setdefault("simulation", {})["sites"] = sites
    if data_root is not None:
        raw.setdefault("simulation", {})["data_root"] = str(data_root)
    if subjects_per_site is not None:
        raw.setdefault("simulation", {}).setdefault("phantom", {})["subjects_per_site"] = (
            subjects_per_site)
    if rounds is not None:
        raw.setdefault("federation", {})["num_rounds"] = rounds
    if local_steps is not None:
        raw["train"] = {"local_steps": local_steps}
    if pretext is not None:
        from shared.pretext_option import parse_pretext_option

        raw["pretext"] = parse_pretext_option(pretext)
    if seed is not None:
        raw["seed"] = seed
    return raw


def simulate_command(
    config: Annotated[Path | None, typer.Option(
        "--config", help="Scenario TOML: RunConfig sections ([federation], [train], [data], "
        "[pretext], [privacy], ...) plus a [simulation] section. Flags below override it.")] = None,
    sites: Annotated[int | None, typer.Option(
        help="Virtual sites. Phantom: how many hospitals to generate (default 4); "
        "--data-root: use the first N site folders.")] = None,
    rounds: Annotated[int | None, typer.Option(help="Federated pretraining rounds (default 5).")] = None,
    local_steps: Annotated[int | None, typer.Option(
        help="Optimizer steps per site per round (default 20).")] = None,
    pretext: Annotated[str | None, typer.Option(
        help="Pretext tasks, comma-separated, each optionally NAME:WEIGHT, e.g. "
        f"'masked_modality_reconstruction,modality_puzzle:0.5'. Available: "
        f"{', '.join(pretext_task_names())}.")] = None,
    strategy: Annotated[str | None, typer.Option(
        help=f"Aggregation: {', '.join(get_args(StrategyName))} (default fedavg). Their "
        "settings live in the scenario's [federation.strategy]; robust ones need "
        "[federation] min_nodes sites (docs/methods.md).")] = None,
    data_root: Annotated[Path | None, typer.Option(
        help="Folder with one sub-folder per site (BraTS 2021 layout), or, when the scenario "
        "sets [simulation] layout, one dataset in its original layout to split into sites "
        "(docs/datasets.md). Default: the embedded multi-site brain phantom, generated once "
        "and cached.")] = None,
    subjects_per_site: Annotated[int | None, typer.Option(
        help="Phantom subjects per site (default 12).")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Output folder (default ./runs/<timestamp>): encoder.safetensors, model_card.json, "
        "metrics.json, checkpoints/, logs.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for data, splits and weights (default 0).")] = None,
    resume: Annotated[Path | None, typer.Option(
        help="Continue the run in this output folder from its last checkpoint; --rounds may "
        "raise the total.")] = None,
    mlflow: Annotated[str | None, typer.Option(
        "--mlflow", metavar="URI", help="Also log the server's metrics to this MLflow tracking "
        "server (http://host:5000, sqlite:///abs/mlflow.db, file:///abs/mlruns); needs the mlflow "
        "extra. TensorBoard event files are always written (tensorboard --logdir OUT).")] = None,
    ray_address: Annotated[str | None, typer.Option(
        help="Run the sites on an existing Ray cluster: HOST:PORT of its head (as `ray start "
        "--head` prints it) or 'auto'. Every node needs fedmm installed and the data at the "
        "same path (docs/simulate.md). Default: a private Ray on this machine.")] = None,
) -> None:
    """Run a federated self-supervised pretraining on Flower's simulation engine."""
    # The scenario is validated first, without torch, MONAI or Flower, so a wrong option or
    # file is refused in about a second; the run's own modules load once it is valid.
    from simulations.scenario import SCENARIO_FILE, build_scenario, deep_merge, read_scenario_file

    try:
        if resume is not None:
            saved = resume / SCENARIO_FILE
            if not saved.is_file():
                raise ConfigError(f"--resume {resume}: {saved} not found. Expected the output "
                                  "folder of an earlier `simulate` run.")
            others = [config, sites, local_steps, pretext, data_root, subjects_per_site, out, seed,
                      strategy]
            if any(v is not None for v in others):
                raise ConfigError("--resume continues a run with its saved settings; only "
                                  "--rounds, --mlflow and --ray-address may be given with it.")
            doc = json.loads(saved.read_text())
            raw = {**doc["run"], "simulation": doc["simulation"]}
            for key in ("out_dir", "resume", "sites"):
                raw.pop(key, None)
            raw = deep_merge(raw, _overrides(sites=None, rounds=rounds, local_steps=None, pretext=None,
                                             data_root=None, seed=None, subjects_per_site=None,
                                             mlflow=mlflow))
            if ray_address is not None:  # where it runs, not what: may change on resume
                raw = deep_merge(raw, {"simulation": {"ray_address": ray_address}})
            scenario = build_scenario(raw, source=str(saved))
            out_dir = resume
        else:
            raw = read_scenario_file(config) if config is not None else {}
            raw = deep_merge(raw, _overrides(
                sites=sites, rounds=rounds, local_steps=local_steps, pretext=pretext,
                data_root=data_root, seed=seed, subjects_per_site=subjects_per_site, mlflow=mlflow))
            if strategy is not None:
                raw = with_strategy(raw, strategy)
            if ray_address is not None:
                raw = deep_merge(raw, {"simulation": {"ray_address": ray_address}})
            scenario = build_scenario(raw, source=str(config) if config else "options")
            stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            out_dir = out if out is not None else Path("runs") / stamp
        check_tracking(scenario.run.tracking)
    except (ConfigError, TrackingError) as err:
        err_console.print(f"[red]{err}[/]")
        raise typer.Exit(2) from err
    from simulations.simulate import SimulationError, run_simulation, summarize

    try:
        result = run_simulation(scenario, out_dir=out_dir.resolve(), resume=resume is not None,
                                console=console)
    except ConfigError as err:
        err_console.print(f"[red]{err}[/]")
        raise typer.Exit(2) from err
    except SimulationError as err:
        err_console.print(f"[red]{err}[/]")
        raise typer.Exit(1) from err
    summarize(result, console)


def simulate_main() -> None:
    """Entry point of the ``simulate`` console script (same as ``fedmm simulate``)."""
    typer.run(simulate_command)
