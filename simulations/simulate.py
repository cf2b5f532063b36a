"""The `simulate` harness: virtual sites on Flower's simulation engine, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from server.checkpoints import ENCODER_FILE, MODEL_CARD_FILE
from server.metrics_log import METRICS_FILE
from server.protocol import PROGRESS_FILE
from server.run_control import RunStatus, latest_run_status, start_run, stop_run, write_run_config
from server.tracking import where_to_look
from shared.app_bundle import app_dir
from shared.config import ConfigError, ModelConfig, RunConfig, SimulatedSitesConfig, TrackingConfig
from shared.model import resolve_preset
from simulations.scenario import SCENARIO_FILE, Scenario, SimulationConfig
from simulations.superlink import SimulationSuperLink, SuperLinkStartError


class SimulationError(RuntimeError):
    """The simulated run failed; the message says where to look."""


def cache_root() -> Path:
    """Where generated phantoms are kept between runs (``FEDMM_CACHE`` overrides)."""
    return Path(os.environ.get("FEDMM_CACHE", Path.home() / ".cache" / "fedmm")).expanduser()


def preprocessed_dir() -> Path:
    """Where this machine's simulated sites keep their preprocessed studies, shared by runs
    and benchmarks (content-addressed: ``client.data.load_site_dataset``)."""
    return (cache_root() / "preprocessed").resolve()


def site_folders(data_root: Path) -> list[str]:
    """Site folders of a data root: its non-hidden sub-folders, sorted."""
    if not data_root.is_dir():
        raise ConfigError(f"--data-root {data_root} is not a folder. Expected one folder per site "
                          "(e.g. <root>/site-0/BraTS2021_00000/...).")
    names = sorted(p.name for p in data_root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise ConfigError(f"--data-root {data_root} has no site folders. Expected one sub-folder "
                          "per site, each in the BraTS 2021 layout.")
    return names


def prepare_data(sim: SimulationConfig, *, seed: int, console: Console,
                 out_dir: Path | None = None) -> tuple[Path, list[str]]:
    """Return (data_root, site folder names), generating the phantom when no root is given.

    With ``sim.layout``, ``data_root`` is one dataset in its original layout: it is split
    into virtual sites whose study lists (and ``partition.json``) go under ``out_dir``.
    """
    if sim.layout is not None:
        from simulations.partition_data import prepare_partitioned_data  # imports HF datasets lazily

        if out_dir is None:
            raise ValueError("prepare_data needs out_dir for [simulation] layout: the partition "
                             "and the sites' study lists are written there.")
        return prepare_partitioned_data(sim, seed=seed, out_dir=out_dir, cache_dir=cache_root(),
                                        console=console)
    if sim.data_root is not None:
        root = sim.data_root.expanduser().resolve()
        sites = site_folders(root)
        if sim.sites is not None:
            if sim.sites > len(sites):
                raise ConfigError(f"--sites {sim.sites} but {root} has only {len(sites)} site "
                                  f"folders ({sites}).")
            sites = sites[: sim.sites]
        return root, sites
    from simulations.phantom import PhantomConfig, generate_phantom

    n_sites = sim.sites or 4
    ph = sim.phantom
    root = cache_root() / (f"phantom-{n_sites}x{ph.subjects_per_site}-seed{seed}-"
                           f"{ph.spacing_mm:g}mm-t{ph.tumour_fraction:g}")
    if ph.profiles_file is not None:
        root = root.with_name(root.name + "-custom")
    console.print(f"[bold]Data[/]: embedded brain phantom, {n_sites} sites x "
                  f"{ph.subjects_per_site} subjects -> {root}")
    manifest = generate_phantom(
        PhantomConfig(sites=n_sites, subjects_per_site=ph.subjects_per_site, seed=seed,
                      spacing_mm=ph.spacing_mm, tumour_fraction=ph.tumour_fraction,
                      profiles_file=ph.profiles_file),
        root, workers=min(4, os.cpu_count() or 1), progress=True,
    )
    return root, [s.name for s in manifest.sites]


def federation_config(num_sites: int, sim: SimulationConfig) -> str:
    """Flower's --federation-config: one virtual SuperNode per site, resources per site.

    On an existing Ray cluster (``sim.ray_address``) the cluster owns its resources: Ray
    refuses ``num_cpus`` when connecting, so only the per-site resources are set (one CPU
    and no GPU unless the scenario says otherwise).
    """
    cores = os.cpu_count() or 1
    if sim.ray_address is not None:
        gpus = sim.client_gpus if sim.client_gpus is not None else 0.0
        return (f"num-supernodes={num_sites} client-resources-num-cpus={sim.client_cpus or 1} "
                f"client-resources-num-gpus={gpus} init-args-logging-level=\"WARNING\"")
    if torch.cuda.is_available():
        parallel = min(num_sites, 4)
        gpus = sim.client_gpus if sim.client_gpus is not None else round(1.0 / parallel, 3)
        cpus = sim.client_cpus or max(1, cores // parallel)
    else:
        gpus = 0.0
        cpus = sim.client_cpus or 1  # one site per core runs them in parallel (FLOWER_NOTES 3.3)
    return (f"num-supernodes={num_sites} client-resources-num-cpus={cpus} "
            f"client-resources-num-gpus={gpus} init-args-num-cpus={cores} "
            f"init-args-logging-level=\"WARNING\"")


@dataclass(frozen=True)
class SimulationResult:
    """A finished run: its folder, Flower's status, its wall time and when each phase ended.

    ``timeline`` holds epoch seconds (``time.time()``): ``started``, ``data_ready``,
    ``sites_checked``, ``superlink_ready``, ``run_finished`` (``flwr run`` exited),
    ``superlink_stopped`` and ``report_done``; the ServerApp's own marks are in
    metrics.json (``meta.timeline``) and each round's ``phases``.
    """

    out_dir: Path
    status: RunStatus
    seconds: float
    idle_sites: tuple[str, ...] = ()  # one line per site that had no usable study
    tracking: TrackingConfig = field(default_factory=TrackingConfig)  # where else the metrics go
    timeline: dict[str, float] = field(default_factory=dict)


def finalize_run_config(scenario: Scenario, *, out_dir: Path, data_root: Path,
                        sites: list[str], resume: bool) -> RunConfig:
    """Fill in what the harness owns: output folder, sites, resume flag, concrete preset.

    The sites' preprocessed studies go to one folder of this machine's cache
    (``preprocessed_dir()``), so a second run on the same data preprocesses nothing
    and each run's folder keeps only its state. On an existing Ray cluster each site keeps
    them in its own state folder instead: a path under this machine's home may not exist on
    the other nodes.
    """
    run = scenario.run
    preset = resolve_preset(run.model, cuda_available=torch.cuda.is_available())
    return run.model_copy(update={
        "out_dir": out_dir,
        "resume": resume,
        "model": ModelConfig(**{**run.model.model_dump(), "preset": preset}),
        "sites": SimulatedSitesConfig(
            data_root=data_root, site_dirs=tuple(sites), state_root=out_dir / "sites",
            samples_dir=preprocessed_dir() if scenario.simulation.ray_address is None else None),
    })


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except (OSError, json.JSONDecodeError):
        return None


def follow(proc: Any, *, out_dir: Path, rounds: int, console: Console) -> None:
    """Show a progress bar from the ServerApp's progress.json until ``flwr run`` exits."""
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/"
               "{task.total} rounds"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("starting Flower simulation", total=rounds)
        while True:
            prog = _read_json(out_dir / PROGRESS_FILE)
            metrics = _read_json(out_dir / METRICS_FILE) or {}
            done = len(metrics.get("rounds", []))
            if prog:
                last = (metrics.get("rounds") or [{}])[-1]
                loss = last.get("evaluate", {}).get("loss")
                extra = f", held-out loss {loss:.3f}" if isinstance(loss, float) else ""
                bar.update(task, completed=done,
                           description=f"{prog.get('phase', '')} (round {prog.get('round')}){extra}")
            try:  # returns as soon as `flwr run` exits, not at the next poll
                proc.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                continue
        metrics = _read_json(out_dir / METRICS_FILE) or {}
        bar.update(task, completed=len(metrics.get("rounds", [])))


def run_simulation(scenario: Scenario, *, out_dir: Path, resume: bool = False,
                   console: Console | None = None, app: Path | None = None,
                   report: bool = True) -> SimulationResult:
    """Run a whole simulated federation and return its final status.

    Args:
        scenario: the run and the simulation's settings.
        out_dir: where the run writes everything.
        resume: continue the run in ``out_dir`` from its last checkpoint.
        console: where progress goes (default: the terminal).
        app: the Flower app folder to submit (default: this installation's,
            ``shared.app_bundle.app_dir()``); tests submit a modified copy. Another folder
            is also put first on the PYTHONPATH of Flower's processes and made the
            SuperLink's working directory: the simulation's Ray actors unpickle the
            ClientApp, importing its modules by name from the path the driver had when Ray
            started (the working directory first), so they would otherwise run this
            installation's packages.
        report: write ``report.html`` at the end.

    Raises:
        SimulationError: the run did not complete; the message points at the logs.
    """
    console = console or Console()
    started = time.time()
    timeline = {"started": started}
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    data_root, sites = prepare_data(scenario.simulation, seed=scenario.run.seed, console=console,
                                    out_dir=out_dir)
    data_seconds = time.time() - started
    timeline["data_ready"] = time.time()
    if len(sites) < scenario.run.federation.min_nodes:
        raise ConfigError(f"The run needs federation.min_nodes={scenario.run.federation.min_nodes}"
                          f" sites but only {len(sites)} are available ({sites}).")
    cfg = finalize_run_config(scenario, out_dir=out_dir, data_root=data_root, sites=sites,
                              resume=resume)
    idle = _check_site_data(cfg, out_dir=out_dir, console=console)
    timeline["sites_checked"] = time.time()
    (out_dir / SCENARIO_FILE).write_text(json.dumps({
        "simulation": json.loads(scenario.simulation.model_dump_json()),
        "run": json.loads(scenario.run.model_dump_json()),
    }, indent=2))
    flwr_home = out_dir / ".flwr"
    run_config_file = write_run_config(cfg, flwr_home / "run_config.toml")
    console.print(f"[bold]Federation[/]: {len(sites)} sites, {cfg.federation.num_rounds} rounds, "
                  f"pretext {'+'.join(cfg.pretext_names)}, strategy {cfg.federation.strategy.name}, "
                  f"encoder {cfg.model.preset}, "
                  f"{'CUDA' if torch.cuda.is_available() else 'CPU'}; logs in {out_dir / 'flower.log'}")
    for line in where_to_look(out_dir, cfg.tracking):
        console.print(f"  {escape(line)}", highlight=False)
    federation_started = time.time()
    app = (app or app_dir()).resolve()
    import_first = app if app != app_dir() else None
    try:
        ray_env = ({"RAY_ADDRESS": scenario.simulation.ray_address}
                   if scenario.simulation.ray_address is not None else {})
        with SimulationSuperLink(flwr_home=flwr_home, log_file=out_dir / "superlink.log",
                                 import_first=import_first, env=ray_env) as link:
            timeline["superlink_ready"] = time.time()
            status = _run_on(link, cfg=cfg, scenario=scenario, run_config_file=run_config_file,
                             num_sites=len(sites), out_dir=out_dir, console=console, app=app)
            timeline["run_finished"] = time.time()
        timeline["superlink_stopped"] = time.time()
    except SuperLinkStartError as err:
        raise SimulationError(str(err)) from err
    if status is None:
        tail = "\n".join((out_dir / "flower.log").read_text(errors="replace").splitlines()[-15:])
        raise SimulationError(f"`flwr run` could not start the run. Its output ends with:\n{tail}")
    if not status.ok:
        raise SimulationError(
            f"The Flower run {status.run_id} ended {status.status}"
            f"{' (' + status.details + ')' if status.details not in ('', 'N/A') else ''}. "
            f"See {out_dir / 'flower.log'} for the ServerApp's and sites' errors. Finished rounds "
            f"are checkpointed: `simulate --resume {out_dir}` continues from the last one."
        )
    if report:
        write_report(out_dir, data_root=data_root, sites=sites, console=console, phases={
            "data_preparation": data_seconds, "federation": time.time() - federation_started})
        timeline["report_done"] = time.time()
    return SimulationResult(out_dir=out_dir, status=status, seconds=time.time() - started,
                            idle_sites=tuple(idle), tracking=cfg.tracking, timeline=timeline)


def _check_site_data(cfg: RunConfig, *, out_dir: Path, console: Console) -> list[str]:
    """Open every site's data once (filling the caches the sites use); say, once, which sites
    have nothing usable; stop when the rest cannot make the quorum. Returns their lines."""
    from simulations.site_data_check import check_sites, require_quorum  # the data pipeline is heavy

    began = time.time()
    checks = check_sites(cfg, out_dir=out_dir)
    for check in checks:
        colour = "yellow" if check.idle else "dim"
        console.print(f"  [{colour}]{escape(check.line())}[/]", highlight=False)
    console.print(f"[bold]Site data[/]: {sum(not c.idle for c in checks)} of {len(checks)} sites have "
                  f"usable studies (checked in {time.time() - began:.0f} s)")
    require_quorum(checks, cfg)
    return [c.line() for c in checks if c.idle]


def write_report(out_dir: Path, *, data_root: Path, sites: list[str], phases: dict[str, float],
                 console: Console) -> Path | None:
    """Write ``timings.json`` and ``report.html`` for a finished run; never raises.

    The run already succeeded, so a report that cannot be written is printed, not raised.
    """
    console.print("[bold]Report[/]: drawing losses, data, AdaDN examples and embeddings ...")
    began = time.time()
    # Imported here: the report pulls in matplotlib and the data pipeline, which `fedmm`'s
    # other commands (and `simulate --help`) do not need.
    from simulations.report import write_run_report, write_timings

    path: Path | None = None
    try:
        write_timings(out_dir, phases)
        path = write_run_report(out_dir, data_root=data_root, site_dirs=sites)
        write_timings(out_dir, {**phases, "report": time.time() - began})
    except Exception as err:  # the report must never fail a finished run
        console.print(f"[yellow]The run report could not be written[/] ({type(err).__name__}: {err}).")
    return path



def _run_on(link: SimulationSuperLink, *, cfg: RunConfig, scenario: Scenario, run_config_file: Path,
            num_sites: int, out_dir: Path, console: Console, app: Path) -> RunStatus | None:
    """Submit the run of the app folder ``app`` to ``link``, follow it to the end, and
    return its status."""
    flwr_home = link.flwr_home
    proc = start_run(app=app, connection=link.connection, run_config_file=run_config_file,
                     federation_config=federation_config(num_sites, scenario.simulation),
                     flwr_home=flwr_home, log_file=out_dir / "flower.log")
    try:
        follow(proc, out_dir=out_dir, rounds=cfg.federation.num_rounds, console=console)
    except KeyboardInterrupt:
        status = latest_run_status(connection=link.connection, flwr_home=flwr_home)
        if status is not None:
            stop_run(status.run_id, connection=link.connection, flwr_home=flwr_home)
        proc.terminate()
        raise
    status = latest_run_status(connection=link.connection, flwr_home=flwr_home)
    return status


def summarize(result: SimulationResult, console: Console) -> None:
    """Print where the outputs are and the loss trajectory."""
    metrics = _read_json(result.out_dir / METRICS_FILE) or {}
    console.print(f"[green]Done[/] in {result.seconds:.0f} s (run {result.status.run_id}).")
    for r in metrics.get("rounds", []):
        tl, el = r["train"].get("loss"), r["evaluate"].get("loss")
        console.print(f"  round {r['round']}: train loss {tl if tl is None else f'{tl:.4f}'}, "
                      f"held-out loss {el if el is None else f'{el:.4f}'}, "
                      f"{len(r['train']['sites'])} sites, {r['seconds']:.1f} s")
    for name in (ENCODER_FILE, MODEL_CARD_FILE):
        console.print(f"  {result.out_dir / name}")
    for line in where_to_look(result.out_dir, result.tracking):
        console.print(f"  {escape(line)}", highlight=False)
    for line in result.idle_sites:
        console.print(f"  [yellow]contributed nothing[/]: {escape(line)}", highlight=False)
    report = result.out_dir / "report.html"  # simulations.report.REPORT_FILE (not imported: heavy)
    if report.is_file():
        console.print(f"  report: {report}")
