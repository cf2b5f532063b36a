"""Samples/s of fedmm's local training round against a plain PyTorch loop, same model, data and tasks.

Both loops train the run's pretext mixture (fedmm's default unless ``--pretext`` names
another) with AdamW on the same site's cached data, batch size and crops. The plain loop
is what a researcher would write by hand: per task, views, forward and loss; the weighted
sum; backward; step. fedmm's loop is ``client.train.train_round`` as a site runs it: it
also restores and saves the site's local state, loads the global weights and collects
metrics, so the ratio shows what that costs (goal: fedmm >= 0.9 x plain); on CUDA it also
makes the next step's batch and views in a background thread (``--prefetch``, default auto),
which the plain loop does not. Samples are optimizer steps x batch size in both loops.

The loops alternate (plain, fedmm, then fedmm, plain, ...) for ``--repeats`` rounds (at
least 5), so drift hits both alike; the result holds every measurement, min/median/max
per loop and the ratio of the medians. On CUDA it also records the peak GPU memory and
the GPU's busy share sampled while training (when torch can read it).

    python benchmarks/throughput.py [--steps 20] [--repeats 5] [--device auto] [--out FILE]
                                    [--prefetch auto|on|off] [--channels-last] [--compile]
                                    [--allow-busy]

Refuses (exit 3, nothing measured or written) when the 1-minute load average exceeds the
core count, unless ``--allow-busy``. Writes benchmarks/results/throughput.json with the
command, machine, load and code commit.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from client.device import autocast_for, select_device
from client.session import SiteSession
from client.train import train_round
from shared.config import RunConfig, SiteConfig
from shared.model import global_state, resolve_preset
from shared.pretext_option import parse_pretext_option
from simulations.benchmark_provenance import BUSY_EXIT, idle_load, provenance
from simulations.periodic_sampler import sampled
from simulations.phantom import PhantomConfig, generate_phantom

MIN_REPEATS = 5
GOAL_RATIO = 0.9
RESULT = Path(__file__).parent / "results" / "throughput.json"


def plain_loop(cfg: RunConfig, site: SiteConfig, *, steps: int) -> float:
    """A hand-written loop over the same model, batches and task mixture; returns samples/s."""
    session = SiteSession.open(cfg, site, pool=None)
    enc, device, mixture = session.encoder, session.device, session.pretext
    opt = torch.optim.AdamW([*enc.parameters(), *session.heads.parameters()], lr=cfg.train.lr,
                            weight_decay=cfg.train.weight_decay)
    batches = session.dataset.train_batches(batch_size=cfg.data.batch_size, seed=123)
    gen = torch.Generator().manual_seed(0)
    enc.train()
    mixture.train()
    done = 0
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        batch = next(batches)
        total: torch.Tensor | None = None
        for task, weight in zip(mixture.tasks, mixture.weights, strict=True):
            views = task.make_views(batch, gen)
            if views.empty:
                continue
            views = views.to(device)
            with autocast_for(device, enabled=cfg.train.amp):
                loss = task.loss(views, encoder=enc, head=session.heads[task.name]) * weight
            total = loss if total is None else total + loss
        if total is None:
            continue
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        done += 1
    _sync(device)
    return done * cfg.data.batch_size / (time.perf_counter() - start)


def fedmm_loop(cfg: RunConfig, site: SiteConfig, *, server_round: int) -> float:
    """fedmm's train_round (``cfg.train.local_steps`` steps); samples/s over the whole call."""
    session = SiteSession.open(cfg, site, pool=None)
    arrays = global_state(session.encoder, site_local_norm=cfg.model.site_local_norm)
    _sync(session.device)
    start = time.perf_counter()
    result = train_round(cfg=cfg, site=site, global_arrays=arrays, pool=None,
                         server_round=server_round)
    _sync(session.device)
    return float(result.metrics["steps"]) * cfg.data.batch_size / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def spread(values: Sequence[float]) -> dict[str, Any]:
    """min/median/max of repeated measurements, with the measurements themselves."""
    if not values:
        raise ValueError("spread needs at least one measurement, got none")
    return {"min": min(values), "median": statistics.median(values), "max": max(values),
            "values": list(values)}


def ratio_of_medians(fedmm: Sequence[float], plain: Sequence[float]) -> float:
    """fedmm's median samples/s over the plain loop's."""
    return statistics.median(fedmm) / statistics.median(plain)


def interleave(repeats: int, first: Callable[[int], float],
               second: Callable[[int], float]) -> tuple[list[float], list[float]]:
    """Run both measurements ``repeats`` times, alternating which goes first (ABBA...)."""
    a: list[float] = []
    b: list[float] = []
    for rep in range(repeats):
        if rep % 2 == 0:
            a.append(first(rep))
            b.append(second(rep))
        else:
            b.append(second(rep))
            a.append(first(rep))
    return a, b


@contextmanager
def gpu_monitor(device: torch.device, interval_s: float = 0.1) -> Iterator[dict[str, Any]]:
    """On CUDA: peak memory and the GPU's busy share (``torch.cuda.utilization``, which needs
    pynvml) sampled every ``interval_s`` while the block runs; an empty dict on CPU."""
    out: dict[str, Any] = {}
    if device.type != "cuda":
        yield out
        return
    torch.cuda.reset_peak_memory_stats()
    # torch.cuda.utilization needs pynvml; without it the share stays unknown (None).
    with sampled(torch.cuda.utilization, interval_s=interval_s) as samples:
        yield out
    out["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    out["gpu_busy_share"] = statistics.mean(samples) / 100 if samples else None
    out["gpu_busy_samples"] = len(samples)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = RunConfig()
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=defaults.train.local_steps,
                        help="training steps per measurement (default: fedmm's local_steps)")
    parser.add_argument("--repeats", type=int, default=MIN_REPEATS,
                        help=f"measurements per loop, interleaved (at least {MIN_REPEATS})")
    parser.add_argument("--preset", default="auto", choices=["auto", "cpu-small", "gpu-base"])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--crop-size", type=int, default=defaults.data.crop_size)
    parser.add_argument("--batch-size", type=int, default=defaults.data.batch_size)
    parser.add_argument("--pretext", default=None,
                        help="task mixture as for simulate --pretext (default: fedmm's default)")
    parser.add_argument("--subjects", type=int, default=8, help="phantom subjects on the site")
    parser.add_argument("--prefetch", default="auto", choices=["auto", "on", "off"],
                        help="fedmm's loop makes the next step's inputs in a background thread "
                             "(train.prefetch; auto: on CUDA); the plain loop never does")
    parser.add_argument("--channels-last", action="store_true",
                        help="both loops with train.channels_last (3D conv weights channels-last)")
    parser.add_argument("--compile", action="store_true",
                        help="both loops with train.compile (torch.compile of the encoder; the "
                             "warm-up pays the compilation)")
    parser.add_argument("--allow-busy", action="store_true",
                        help="measure even when the load average exceeds the core count")
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args(argv)
    if args.repeats < MIN_REPEATS:
        parser.error(f"--repeats must be at least {MIN_REPEATS} (a median of fewer says little), "
                     f"got {args.repeats}")
    return args


def run_config(args: argparse.Namespace) -> RunConfig:
    raw: dict[str, Any] = {
        "model": {"preset": args.preset},
        "data": {"crop_size": args.crop_size, "batch_size": args.batch_size},
        "train": {"local_steps": args.steps, "device": args.device,
                  "channels_last": args.channels_last, "compile": args.compile,
                  "prefetch": args.prefetch},
    }
    if args.pretext:
        raw["pretext"] = parse_pretext_option(args.pretext)
    return RunConfig.model_validate(raw)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    load_before = idle_load(allow_busy=args.allow_busy)
    if load_before is None:
        return BUSY_EXIT
    cfg = run_config(args)
    device = select_device(cfg.train)
    with tempfile.TemporaryDirectory(prefix="fedmm-bench-") as tmp:
        root = Path(tmp) / "data"
        manifest = generate_phantom(PhantomConfig(sites=1, subjects_per_site=args.subjects, seed=0),
                                    root, workers=2, progress=False)
        site = SiteConfig(data_dir=root / manifest.sites[0].name, state_dir=Path(tmp) / "state")
        # Warm-up: fills the on-disk cache and the allocator for both loops alike.
        plain_loop(cfg, site, steps=2)
        fedmm_loop(cfg.model_copy(update={"train": cfg.train.model_copy(update={"local_steps": 2})}),
                   site, server_round=0)
        with gpu_monitor(device) as gpu:
            plain, fed = interleave(args.repeats, lambda _: plain_loop(cfg, site, steps=args.steps),
                                    lambda rep: fedmm_loop(cfg, site, server_round=rep + 1))
    result = {
        "benchmark": "throughput",
        **provenance("throughput.py", argv, load_before=load_before),
        "device": str(device),
        "config": {"steps": args.steps, "repeats": args.repeats,
                   "preset": resolve_preset(cfg.model, cuda_available=device.type == "cuda"),
                   "crop_size": args.crop_size, "batch_size": args.batch_size,
                   "pretext": [{"name": t.name, "weight": t.weight} for t in cfg.pretext],
                   "amp": cfg.train.amp and device.type == "cuda",
                   "channels_last": cfg.train.channels_last, "compile": cfg.train.compile,
                   "prefetch": cfg.train.prefetch},
        "plain_samples_per_s": spread(plain),
        "fedmm_samples_per_s": spread(fed),
        "ratio": ratio_of_medians(fed, plain),
        "ratio_definition": "median fedmm samples/s over median plain samples/s",
        "goal_ratio": GOAL_RATIO,
        **({"gpu": gpu} if gpu else {}),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"| loop | samples/s min | median | max ({args.repeats} interleaved repeats) |\n"
          "|---|---|---|---|")
    for name, key in (("plain PyTorch", "plain_samples_per_s"), ("fedmm train_round", "fedmm_samples_per_s")):
        s = result[key]
        print(f"| {name} | {s['min']:.2f} | {s['median']:.2f} | {s['max']:.2f} |")
    print(f"\nratio of medians fedmm/plain = {result['ratio']:.3f} (goal >= {GOAL_RATIO}) on {device}; "
          f"load {load_before['load_1min']} on {load_before['cores']} cores; saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
