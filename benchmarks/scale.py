"""How a simulated federation's round time and memory grow with the number of sites (4, 8, 16, 32).

For each site count, one ``simulate`` run of tiny phantom sites (4 subjects at 4 mm,
16^3 crops, 2 local steps by default) for 2 rounds. Per entry: ``sites``,
``seconds_per_round`` (the mean of the rounds' wall times, evaluation included) and
``peak_rss_mb``: the peak, sampled every 0.5 s, of the summed resident memory of this
process and every process it started (SuperLink, SuperExec, the simulation with its
ServerApp, Ray and its site actors). Summed RSS counts pages shared between processes
(libraries, torch) once per process, so it overstates the machine's use; it is the same
measure at every size, which is what the trend needs. A least-squares line over the
entries gives the slope per added site of both, with R^2: a linear trend is the goal.

    python benchmarks/scale.py [--sites 4,8,16,32] [--rounds 2] [--out FILE] [--allow-busy]

Refuses (exit 3, nothing run or written) when the 1-minute load average exceeds the core
count, unless ``--allow-busy``. Writes benchmarks/results/scale.json with the command,
machine, load and code commit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from server.metrics_log import METRICS_FILE
from simulations.benchmark_provenance import BUSY_EXIT, idle_load, provenance
from simulations.periodic_sampler import sampled
from simulations.scenario import Scenario, build_scenario
from simulations.simulate import run_simulation

RESULT = Path(__file__).parent / "results" / "scale.json"
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc (processes that vanish meanwhile are skipped)."""
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: the ppid follows the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def tree_rss_mb(root: int) -> float:
    """Summed resident memory (MB) of ``root`` and all its descendants."""
    tree, total, todo = _children(), 0, [root]
    while todo:
        pid = todo.pop()
        with contextlib.suppress(OSError, IndexError, ValueError):  # gone, or not readable
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
        todo.extend(tree.get(pid, []))
    return total / 2**20


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> dict[str, float | None]:
    """Least-squares line ``y = slope * x + intercept`` and its R^2 (None with < 2 points)."""
    if len(xs) < 2 or len(set(xs)) < 2:
        return {"slope": None, "intercept": None, "r2": None}
    x, y = np.asarray(xs, float), np.asarray(ys, float)
    slope, intercept = np.polyfit(x, y, 1)
    residual = float(((y - (slope * x + intercept)) ** 2).sum())
    spread = float(((y - y.mean()) ** 2).sum())
    return {"slope": float(slope), "intercept": float(intercept),
            "r2": 1.0 - residual / spread if spread > 0 else 1.0}


def scenario_for(sites: int, args: argparse.Namespace) -> Scenario:
    return build_scenario({
        "seed": args.seed,
        "simulation": {"sites": sites,
                       "phantom": {"subjects_per_site": args.subjects, "spacing_mm": args.spacing_mm}},
        "data": {"spacing_mm": args.spacing_mm, "crop_size": args.crop_size,
                 "batch_size": args.batch_size, "eval_fraction": 0.25},
        "train": {"local_steps": args.local_steps, "eval_batches": 1},
        "federation": {"num_rounds": args.rounds, "min_nodes": sites},
        # Tiny sites: k and epsilon low enough for four subjects to release statistics.
        "privacy": {"min_studies": 2, "epsilon": 1000.0},
    }, source="benchmarks/scale.py options")


def measure(sites: int, args: argparse.Namespace, *, work: Path, console: Console) -> dict[str, Any]:
    """One run with ``sites`` sites: its entry of scale.json."""
    root = os.getpid()
    with sampled(lambda: tree_rss_mb(root), interval_s=0.5) as memory:
        result = run_simulation(scenario_for(sites, args), out_dir=work / f"sites-{sites}",
                                console=console, report=False)
    rounds = json.loads((result.out_dir / METRICS_FILE).read_text())["rounds"]
    return {"sites": sites, **round_figures(rounds), "peak_rss_mb": max(memory),
            "run_seconds": result.seconds}


def round_figures(rounds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """From metrics.json's rounds: the mean round time, the server's screening-and-aggregation
    time per round (the part of a round that grows with the replies the server holds), and
    the bytes a site sent and the server received per round."""
    seconds = [float(r["seconds"]) for r in rounds]
    aggregate = [float(r["phases"]["screen_and_aggregate"]) for r in rounds
                 if "screen_and_aggregate" in r.get("phases", {})]
    per_site = [r["train"]["transfer"]["bytes_sent_per_site"] for r in rounds
                if (r["train"].get("transfer") or {}).get("bytes_sent_per_site")]
    received = [r["train"]["transfer"]["bytes_sent_per_site"] * len(r["train"]["sites"])
                for r in rounds if (r["train"].get("transfer") or {}).get("bytes_sent_per_site")]
    return {"seconds_per_round": sum(seconds) / len(seconds), "round_seconds": seconds,
            "aggregate_seconds_per_round": sum(aggregate) / len(aggregate) if aggregate else None,
            "bytes_sent_per_site": max(per_site) if per_site else None,
            "bytes_received_per_round": max(received) if received else None}


def summarize(entries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Slopes per added site of round time and peak memory."""
    sites = [e["sites"] for e in entries]
    aggregate = [(e["sites"], e["aggregate_seconds_per_round"]) for e in entries
                 if e.get("aggregate_seconds_per_round") is not None]
    return {"seconds_per_round_fit": linear_fit(sites, [e["seconds_per_round"] for e in entries]),
            "peak_rss_mb_fit": linear_fit(sites, [e["peak_rss_mb"] for e in entries]),
            "aggregate_seconds_fit": linear_fit([a for a, _ in aggregate], [b for _, b in aggregate])}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sites", default="4,8,16,32", help="comma-separated site counts")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--local-steps", type=int, default=2)
    parser.add_argument("--subjects", type=int, default=4, help="phantom subjects per site")
    parser.add_argument("--spacing-mm", type=float, default=4.0)
    parser.add_argument("--crop-size", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None, help="keep the runs' folders here")
    parser.add_argument("--allow-busy", action="store_true",
                        help="measure even when the load average exceeds the core count")
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args(argv)
    try:
        args.site_counts = sorted({int(s) for s in args.sites.split(",") if s.strip()})
    except ValueError:
        parser.error(f"--sites expects comma-separated whole numbers such as 4,8,16,32, got {args.sites!r}")
    if not args.site_counts or args.site_counts[0] < 1:
        parser.error(f"--sites needs site counts of at least 1, got {args.sites!r}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    load_before = idle_load(allow_busy=args.allow_busy)
    if load_before is None:
        return BUSY_EXIT
    console = Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="fedmm-scale-") as tmp:
        work = (args.work or Path(tmp)).resolve()
        entries = [measure(n, args, work=work, console=console) for n in args.site_counts]
    doc = {"benchmark": "scale", **provenance("scale.py", argv, load_before=load_before),
           "config": {k: v for k, v in vars(args).items() if k not in ("out", "work", "sites")},
           "peak_rss_mb_definition": "peak of the summed RSS of this process and all it started, "
                                     "sampled every 0.5 s (shared pages counted per process)",
           "entries": entries, **summarize(entries)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print("| sites | s per round | aggregation s per round | MB received per round | peak RSS MB |\n"
          "|---|---|---|---|---|")
    for e in entries:
        agg, got = e["aggregate_seconds_per_round"], e["bytes_received_per_round"]
        print(f"| {e['sites']} | {e['seconds_per_round']:.1f} | "
              f"{'n/a' if agg is None else f'{agg:.3f}'} | "
              f"{'n/a' if got is None else f'{got / 2**20:.1f}'} | {e['peak_rss_mb']:.0f} |")
    for name in ("seconds_per_round_fit", "peak_rss_mb_fit", "aggregate_seconds_fit"):
        fit = doc[name]
        if fit["slope"] is not None:
            print(f"{name}: {fit['slope']:.3g} per site (R^2 {fit['r2']:.3f})")
    print(f"load {load_before['load_1min']} on {load_before['cores']} cores; saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
