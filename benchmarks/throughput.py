"""Samples/s of fedmm's local training round against a plain PyTorch loop, same model and data.

Both loops train the same encoder + projection head with AdamW on the same site's cached
data, batch size and crops; the plain loop is what a researcher would write by hand (views,
forward, backward, step). fedmm's loop additionally restores and saves the site's local
state, loads the global weights and collects metrics: the ratio shows what that costs.

    python benchmarks/throughput.py [--steps 30] [--repeats 3] [--preset auto] [--out FILE]

Prints a table and writes benchmarks/results/throughput.json (with the machine it ran on).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from client.device import autocast_for, select_device
from client.session import SiteSession
from client.train import train_round
from shared.config import RunConfig, SiteConfig
from shared.model import global_state
from simulations.phantom import PhantomConfig, generate_phantom


def plain_loop(cfg: RunConfig, site: SiteConfig, *, steps: int) -> float:
    """A hand-written loop over the same model and batches; returns samples/s."""
    session = SiteSession.open(cfg, site, pool=None)
    enc, device = session.encoder, session.device
    task, head = session.pretext.tasks[0], session.heads[session.pretext.tasks[0].name]
    opt = torch.optim.AdamW([*enc.parameters(), *head.parameters()], lr=cfg.train.lr)
    batches = session.dataset.train_batches(batch_size=cfg.data.batch_size, seed=123)
    gen = torch.Generator().manual_seed(0)
    samples = 0
    start = time.perf_counter()
    for _ in range(steps):
        views = task.make_views(next(batches), gen).to(device)
        with autocast_for(device, enabled=cfg.train.amp):
            loss = task.loss(views, encoder=enc, head=head)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        samples += views.num_studies
    if device.type == "cuda":
        torch.cuda.synchronize()
    return samples / (time.perf_counter() - start)


def fedmm_loop(cfg: RunConfig, site: SiteConfig, *, steps: int, server_round: int) -> float:
    """fedmm's train_round with ``steps`` local steps; returns samples/s over the whole call."""
    session = SiteSession.open(cfg, site, pool=None)
    arrays = global_state(session.encoder, site_local_norm=cfg.model.site_local_norm)
    start = time.perf_counter()
    result = train_round(cfg=cfg, site=site, global_arrays=arrays, pool=None,
                         server_round=server_round)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return float(result.metrics["num-examples"]) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="training steps per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per loop")
    parser.add_argument("--preset", default="auto", choices=["auto", "cpu-small", "gpu-base"])
    parser.add_argument("--crop-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--subjects", type=int, default=8, help="phantom subjects on the site")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "throughput.json")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="fedmm-bench-") as tmp:
        root = Path(tmp) / "data"
        manifest = generate_phantom(PhantomConfig(sites=1, subjects_per_site=args.subjects, seed=0),
                                    root, workers=2, progress=False)
        cfg = RunConfig.model_validate({
            "model": {"preset": args.preset},
            "data": {"crop_size": args.crop_size, "batch_size": args.batch_size},
            "train": {"local_steps": args.steps},
        })
        site = SiteConfig(data_dir=root / manifest.sites[0].name, state_dir=Path(tmp) / "state")
        device = select_device(cfg.train)
        # Warm-up: fills the on-disk cache and the allocator for both loops alike.
        plain_loop(cfg.model_copy(), site, steps=3)
        fedmm_loop(cfg.model_copy(update={"train": cfg.train.model_copy(update={"local_steps": 3})}),
                   site, steps=3, server_round=0)
        plain, fed = [], []
        for rep in range(args.repeats):  # interleaved, so drift hits both alike
            plain.append(plain_loop(cfg, site, steps=args.steps))
            fed.append(fedmm_loop(cfg, site, steps=args.steps, server_round=rep + 1))

    result = {
        "benchmark": "throughput",
        "command": "python benchmarks/throughput.py " + " ".join(argv or sys.argv[1:]),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "device": str(device), "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                    "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None},
        "config": {"steps": args.steps, "repeats": args.repeats, "preset": args.preset,
                   "crop_size": args.crop_size, "batch_size": args.batch_size},
        "plain_samples_per_s": plain,
        "fedmm_samples_per_s": fed,
        "plain_median": statistics.median(plain),
        "fedmm_median": statistics.median(fed),
        "ratio": statistics.median(fed) / statistics.median(plain),
        "goal_ratio": 0.9,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"| loop | samples/s (median of {args.repeats}) |\n|---|---|")
    print(f"| plain PyTorch | {result['plain_median']:.2f} |")
    print(f"| fedmm train_round | {result['fedmm_median']:.2f} |")
    print(f"\nratio fedmm/plain = {result['ratio']:.3f} (goal >= 0.9) on {device}; "
          f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
