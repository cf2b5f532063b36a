"""What Flower adds to a pretraining run: the same run as a plain loop over the sites and through `simulate`.

In one invocation, on the same data (the embedded phantom) with the same settings and
seed, the pretraining (sites x rounds x local steps, each round's held-out evaluation)
runs twice:

1. **plain**: a sequential loop without Flower: each round, every site's
   ``train_round`` then ``evaluate_round`` (client/), one after another, and a weighted
   average of the encoders (FedAvg) in between; the statistics pool is the sites' exact
   one (``simulations.baselines.exact_pool``), as no release is needed in one process;
2. **flower**: ``simulate`` (simulations/simulate.py) end to end.

The result splits the Flower run into phases, from ``simulate``'s own marks
(``SimulationResult.timeline``), the ServerApp's (metrics.json ``meta.timeline``, each
round's ``phases``) and each site's training seconds, and states two figures:

* ``per_round_overhead``: the median over rounds of (round wall time - the slowest site's
  training time) / that training time (issue 16's definition; a round's wall time
  includes its evaluation). When there are more sites than parallel slots (CPU cores /
  ``client_cpus``), waiting for the second wave counts as overhead: compare
  ``per_round_overhead_vs_plain`` (Flower's median round against the plain loop's).
* ``fixed_seconds``: what the run pays once, outside its rounds: everything from the
  site data check's end to the SuperLink's stop, minus the rounds (data generation, the
  site data check and the report excluded).

    python benchmarks/overhead.py [--sites 4] [--rounds 5] [--local-steps 20] [--out FILE]
                                  [--allow-busy]

Refuses (exit 3, nothing run or written) when the 1-minute load average exceeds the core
count, unless ``--allow-busy``. Writes benchmarks/results/overhead.json with the command,
machine, load and code commit.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from client.evaluate import evaluate_round
from client.train import train_round
from server.metrics_log import METRICS_FILE
from shared.config import SiteConfig
from shared.model import build_encoder, global_state
from shared.pretext.shared_heads import initial_head_arrays
from simulations.baselines import exact_pool
from simulations.benchmark_provenance import BUSY_EXIT, idle_load, provenance
from simulations.scenario import Scenario, build_scenario
from simulations.simulate import SimulationResult, finalize_run_config, prepare_data, run_simulation
from simulations.site_data_check import check_sites

RESULT = Path(__file__).parent / "results" / "overhead.json"
GOALS = {"per_round_overhead": 0.10, "fixed_seconds": 10.0}


def fedavg(results: Sequence[tuple[Mapping[str, torch.Tensor], float]]) -> dict[str, torch.Tensor]:
    """The weighted mean of the sites' arrays (weights: their num-examples), in float32."""
    total = sum(w for _, w in results)
    if total <= 0:
        raise ValueError(f"no site trained on any example (weights {[w for _, w in results]})")
    out = {}
    for name, first in results[0][0].items():
        mean = torch.zeros_like(first, dtype=torch.float32)
        for arrays, weight in results:
            mean += arrays[name].float() * (weight / total)
        out[name] = mean.to(first.dtype)
    return out


def run_plain(scenario: Scenario, *, data_root: Path, sites: list[str], work: Path) -> list[dict[str, Any]]:
    """The pretraining as a sequential loop without Flower; one entry per round."""
    cfg = finalize_run_config(scenario, out_dir=work, data_root=data_root, sites=sites, resume=False)
    check_sites(cfg, out_dir=work)  # fills the sites' data caches, as simulate does first
    if cfg.sites is None:
        raise ValueError("finalize_run_config returned a config without sites; expected them set")
    site_cfgs = [SiteConfig(data_dir=d, state_dir=s, samples_dir=cfg.sites.samples_dir)
                 for d, s in (cfg.sites.site(k) for k in range(len(sites)))]
    pool = exact_pool(cfg, [s.data_dir for s in site_cfgs], state_root=work / "pool")
    torch.manual_seed(cfg.seed)  # the same initial weights as the federated server
    encoder = build_encoder(cfg.model.preset)
    arrays = {**global_state(encoder, site_local_norm=cfg.model.site_local_norm),
              **initial_head_arrays(cfg, encoder)}
    # Warm-up, untimed, as the Flower run's round 0 warms its actors: one step on the first
    # site into a throw-away state folder (imports, TorchScript, allocator).
    warm = cfg.model_copy(update={"train": cfg.train.model_copy(update={"local_steps": 1})})
    train_round(cfg=warm, site=site_cfgs[0].model_copy(update={"state_dir": work / "warm-up"}),
                global_arrays=arrays, pool=pool, server_round=1)
    rounds = []
    for rnd in range(1, cfg.federation.num_rounds + 1):
        began = time.perf_counter()
        trained, train_s, eval_s = [], [], []
        for site in site_cfgs:
            t0 = time.perf_counter()
            result = train_round(cfg=cfg, site=site, global_arrays=arrays, pool=pool, server_round=rnd)
            train_s.append(time.perf_counter() - t0)
            trained.append((result.arrays, float(result.metrics["num-examples"])))
        t0 = time.perf_counter()
        arrays = fedavg(trained)
        aggregate_s = time.perf_counter() - t0
        for site in site_cfgs:
            t0 = time.perf_counter()
            evaluate_round(cfg=cfg, site=site, global_arrays=arrays, pool=pool, server_round=rnd)
            eval_s.append(time.perf_counter() - t0)
        rounds.append({"round": rnd, "seconds": time.perf_counter() - began,
                       "site_train_seconds": train_s, "site_evaluate_seconds": eval_s,
                       "aggregate_seconds": aggregate_s})
    return rounds


def _site_seconds(entry: Mapping[str, Any], part: str) -> list[float]:
    sites = ((entry.get(part) or {}).get("sites") or {}).values()
    return [float(s["seconds"]) for s in sites if isinstance(s.get("seconds"), int | float)]


def flower_rounds(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per round of the Flower run: wall time, its phases, the sites' seconds and the overhead."""
    out = []
    for entry in metrics.get("rounds", []):
        train = _site_seconds(entry, "train")
        slowest = max(train, default=0.0)
        out.append({
            "round": entry["round"], "seconds": entry["seconds"], "phases": entry.get("phases", {}),
            "site_train_seconds": train, "site_evaluate_seconds": _site_seconds(entry, "evaluate"),
            "slowest_site_train_seconds": slowest,
            "overhead": (entry["seconds"] - slowest) / slowest if slowest > 0 else None,
        })
    return out


def phase_breakdown(sim: Mapping[str, float], server: Mapping[str, float],
                    rounds_seconds: float) -> dict[str, float | None]:
    """Seconds of each phase of the Flower run, from simulate's and the ServerApp's marks.

    ``sim``: ``SimulationResult.timeline``; ``server``: metrics.json ``meta.timeline``
    (both epoch seconds on this machine). A phase whose marks are missing is None.
    """
    def span(a: Mapping[str, float], start: str, b: Mapping[str, float], end: str) -> float | None:
        return b[end] - a[start] if start in a and end in b else None

    after_round0 = span(server, "statistics_done", server, "rounds_done")
    return {
        "data_preparation": span(sim, "started", sim, "data_ready"),
        "site_data_check": span(sim, "data_ready", sim, "sites_checked"),
        "superlink_start": span(sim, "sites_checked", sim, "superlink_ready"),
        "submit_app_build_and_serverapp_start": span(sim, "superlink_ready", server, "serverapp_started"),
        "wait_for_sites": span(server, "serverapp_started", server, "sites_connected"),
        "round0_statistics_and_ray_actors": span(server, "sites_connected", server, "statistics_done"),
        "rounds": rounds_seconds,
        "between_rounds": after_round0 - rounds_seconds if after_round0 is not None else None,
        "export": span(server, "rounds_done", server, "export_done"),
        "run_end_and_status": span(server, "export_done", sim, "run_finished"),
        "superlink_stop": span(sim, "run_finished", sim, "superlink_stopped"),
        "report": span(sim, "superlink_stopped", sim, "report_done"),
    }


def summarize(result: SimulationResult, metrics: Mapping[str, Any],
              plain: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The overhead figures of one Flower run against its plain twin."""
    rounds = flower_rounds(metrics)
    rounds_seconds = sum(r["seconds"] for r in rounds)
    phases = phase_breakdown(result.timeline, (metrics.get("meta") or {}).get("timeline") or {},
                             rounds_seconds)
    tl = result.timeline
    fixed = (tl["superlink_stopped"] - tl["sites_checked"] - rounds_seconds
             if "superlink_stopped" in tl and "sites_checked" in tl else None)
    overheads = [r["overhead"] for r in rounds if r["overhead"] is not None]
    flower_median = statistics.median(r["seconds"] for r in rounds) if rounds else None
    plain_median = statistics.median(r["seconds"] for r in plain) if plain else None
    return {
        "per_round_overhead": statistics.median(overheads) if overheads else None,
        "per_round_overhead_definition": "median over rounds of (round wall time incl. evaluation "
                                         "- slowest site's training time) / that training time",
        "per_round_overhead_vs_plain": (flower_median / plain_median - 1
                                        if flower_median and plain_median else None),
        "fixed_seconds": fixed,
        "fixed_seconds_definition": "from the site data check's end to the SuperLink's stop, minus "
                                    "the rounds (data generation, site data check, report excluded)",
        "goals": GOALS,
        "phases_seconds": phases,
        "flower_rounds": rounds,
        "plain_rounds": list(plain),
        "plain_total_seconds": sum(r["seconds"] for r in plain),
        "flower_total_seconds": result.seconds,
    }


def fmt(value: float | None, spec: str) -> str:
    """``value`` formatted by ``spec``, or "n/a" when it is missing."""
    return "n/a" if value is None else format(value, spec)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sites", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--local-steps", type=int, default=20)
    parser.add_argument("--subjects", type=int, default=12, help="phantom subjects per site")
    parser.add_argument("--spacing-mm", type=float, default=2.0, help="phantom and data spacing")
    parser.add_argument("--crop-size", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None,
                        help="keep both runs' folders here (default: a temporary folder)")
    parser.add_argument("--allow-busy", action="store_true",
                        help="measure even when the load average exceeds the core count")
    parser.add_argument("--out", type=Path, default=RESULT)
    return parser.parse_args(argv)


def scenario_of(args: argparse.Namespace) -> Scenario:
    return build_scenario({
        "seed": args.seed,
        "simulation": {"sites": args.sites,
                       "phantom": {"subjects_per_site": args.subjects, "spacing_mm": args.spacing_mm}},
        "data": {"spacing_mm": args.spacing_mm, "crop_size": args.crop_size,
                 "batch_size": args.batch_size},
        "train": {"local_steps": args.local_steps},
        "federation": {"num_rounds": args.rounds, "min_nodes": args.sites},
    }, source="benchmarks/overhead.py options")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    load_before = idle_load(allow_busy=args.allow_busy)
    if load_before is None:
        return BUSY_EXIT
    scenario = scenario_of(args)
    console = Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="fedmm-overhead-") as tmp:
        work = (args.work or Path(tmp)).resolve()
        data_root, sites = prepare_data(scenario.simulation, seed=scenario.run.seed, console=console,
                                        out_dir=work / "flower")
        console.print("[bold]plain[/]: the same pretraining as a sequential loop without Flower ...")
        plain = run_plain(scenario, data_root=data_root, sites=sites, work=work / "plain")
        console.print("[bold]flower[/]: the same pretraining through simulate ...")
        result = run_simulation(scenario, out_dir=work / "flower", console=console)
        metrics = json.loads((result.out_dir / METRICS_FILE).read_text())
    summary = summarize(result, metrics, plain)
    doc = {"benchmark": "overhead", **provenance("overhead.py", argv, load_before=load_before),
           "config": {k: v for k, v in vars(args).items() if k not in ("out", "work")}, **summary}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print("| phase | seconds |\n|---|---|")
    for name, seconds in summary["phases_seconds"].items():
        print(f"| {name.replace('_', ' ')} | {'-' if seconds is None else f'{seconds:.1f}'} |")
    print(f"\nper-round overhead {fmt(summary['per_round_overhead'], '.1%')} (goal <= 10 %), vs the "
          f"plain loop {fmt(summary['per_round_overhead_vs_plain'], '+.1%')}; fixed "
          f"{fmt(summary['fixed_seconds'], '.1f')} s per run (goal <= 10 s); "
          f"load {load_before['load_1min']} on {load_before['cores']} cores; saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
