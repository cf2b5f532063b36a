"""Which pretext task (or combination) should fedmm pretrain with? Cost and downstream value.

For each registered pretext task alone, and for the combinations given with --combos, on
the quality benchmark's phantom (the last site held out):

    seconds per local step   one site's train_round, measured on this machine
    downstream (10 % labels) federated pretraining through Flower, then fine-tuning on the
                             training sites' labelled subset and testing on the held-out
                             site: Dice (WT/TC/ET mean) and grade accuracy, mean +- std
                             over seeds, against the same fine-tuning from scratch

    python benchmarks/pretext.py                        # the committed run (every task,
                                                        # then the best two combined)
    python benchmarks/pretext.py --quick                # a minutes-long smoke version

Writes benchmarks/results/pretext.json, pretext.md and pretext.png (or --out-dir).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import (
    RESULTS,
    Job,
    QualityConfig,
    machine_line,
    paired_points,
    phantom_sites,
    pretraining_config,
    run_quality,
)


def seconds_per_step(cfg: QualityConfig, pretext: str, *, data_dir: Path, steps: int) -> float:
    """Median seconds of one local step of ``pretext`` on one site (after one warm-up call)."""
    import torch

    from client.train import train_round
    from shared.config import RunConfig, SiteConfig
    from shared.model import build_encoder, global_state, resolve_preset

    raw = pretraining_config(replace(cfg, pretext=pretext, local_steps=steps), seed=0, num_sites=1)
    run = RunConfig.model_validate(raw)
    preset = resolve_preset(run.model, cuda_available=torch.cuda.is_available())
    arrays = global_state(build_encoder(preset), site_local_norm=run.model.site_local_norm)
    times = []
    with tempfile.TemporaryDirectory() as state:
        site = SiteConfig(data_dir=data_dir, state_dir=Path(state))
        for server_round in (1, 99, 99, 99):  # round 1 warms caches; 99: every stage is on
            t0 = time.perf_counter()
            result = train_round(cfg=run, site=site, global_arrays=arrays, pool=None,
                                 server_round=server_round)
            if server_round == 99:
                times.append((time.perf_counter() - t0) / max(1, int(result.metrics["steps"])))
    return statistics.median(times)


def row_of(doc: dict[str, Any], variant: str) -> dict[str, float]:
    return next(iter(doc["results"].values())).get(variant, {})


def paired_with_scratch(doc: dict[str, Any], scratch: dict[str, Any], cfg: QualityConfig) -> list[float]:
    """Federated's segmentation Dice minus scratch's on each (seed, labelled draw), in points:
    the quality benchmark's own pairing (``paired_points``) over both runs' jobs."""
    jobs = [Job(**j) for j in (*scratch["jobs"], *doc["jobs"])]
    pairs = replace(cfg, variants=("scratch", "federated"))
    return paired_points(jobs, pairs, fraction=min(cfg.label_fractions))["federated"]


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| pretext | s / local step | Dice mean (10 % labels) | Dice - scratch (points) | "
             "per seed x draw (points) | accuracy | AUC |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        e = r["downstream"]

        def fmt(k: str, e: dict[str, float] = e) -> str:
            return f"{e[k + '_mean']:.3f} ± {e[k + '_std']:.3f}" if k + "_mean" in e else "n/a"

        delta = r.get("dice_minus_scratch_points")
        paired = " / ".join(f"{v:+.1f}" for v in r.get("paired_points", []))
        lines.append(f"| {r['pretext']} | {r['seconds_per_step']:.2f} | {fmt('dice')} | "
                     f"{'' if delta is None else f'{delta:+.1f}'} | {paired} | {fmt('acc')} | "
                     f"{fmt('auc')} |")
    return "\n".join(lines)


def bar_chart(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=100)
    names = [r["pretext"].replace(",", "+\n") for r in rows]
    means = [r["downstream"].get("dice_mean", 0.0) for r in rows]
    stds = [r["downstream"].get("dice_std", 0.0) for r in rows]
    ax.bar(range(len(rows)), means, yerr=stds, capsize=3,
           color=["grey" if r["pretext"] == "scratch" else "C0" for r in rows])
    ax.set_xticks(range(len(rows)), names, fontsize=7)
    ax.set_ylabel("Dice mean, held-out site")
    ax.set_title("downstream segmentation at 10 % labels after federated pretraining", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from shared.pretext import available_pretexts

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="minutes-long smoke version")
    parser.add_argument("--tasks", default=",".join(available_pretexts()),
                        help="tasks to measure alone (default: every registered task)")
    parser.add_argument("--combos", nargs="*", default=["auto"],
                        help="combinations to measure too, each in the --pretext form 'a,b:0.5'; "
                             "'auto' (default) = the two single tasks with the best Dice")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--local-steps", type=int, default=None)
    parser.add_argument("--finetune-steps", type=int, default=None)
    parser.add_argument("--step-timing-steps", type=int, default=5)
    parser.add_argument("--site-local-norm", choices=("true", "false"), default=None,
                        help="keep normalization affine on the sites (FedBN) during pretraining")
    parser.add_argument("--name", default=None,
                        help="results file name without extension (default pretext, or "
                             "pretext_quick with --quick); a variant run never overwrites them")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--work-dir", type=Path, default=Path("runs") / "pretext")
    args = parser.parse_args(argv)
    base = QualityConfig.quick() if args.quick else QualityConfig()
    overrides: dict[str, Any] = {"seeds": tuple(int(s) for s in args.seeds.split(",")),
                                 "label_fractions": (min(base.label_fractions),)}
    for knob in ("rounds", "local_steps", "finetune_steps"):
        if getattr(args, knob) is not None:
            overrides[knob] = getattr(args, knob)
    if args.site_local_norm is not None:
        overrides["site_local_norm"] = args.site_local_norm == "true"
    base = replace(base, **overrides)
    started = time.perf_counter()
    data_root, train_sites, _ = phantom_sites(base)
    work = args.work_dir.resolve()

    singles = [t for t in args.tasks.split(",") if t]
    scratch = run_quality(replace(base, variants=("scratch",)), work=work / "scratch")
    rows: list[dict[str, Any]] = [{"pretext": "scratch", "seconds_per_step": 0.0,
                                   "downstream": row_of(scratch, "scratch")}]
    base_dice = rows[0]["downstream"].get("dice_mean")

    def measure(pretext: str) -> None:
        print(f"== {pretext}", flush=True)
        step_s = seconds_per_step(base, pretext, data_dir=data_root / train_sites[0],
                                  steps=args.step_timing_steps)
        doc = run_quality(replace(base, variants=("federated",), pretext=pretext),
                          work=work / pretext.replace(",", "+").replace(":", "_"))
        entry = row_of(doc, "federated")
        paired = paired_with_scratch(doc, scratch, base)
        rows.append({"pretext": pretext, "seconds_per_step": step_s, "downstream": entry,
                     "paired_points": paired,
                     "dice_minus_scratch_points": (100 * (entry["dice_mean"] - base_dice)
                                                   if base_dice is not None and "dice_mean" in entry
                                                   else None),
                     "pretrain_seconds": doc["seconds"]["pretrain"], "jobs": doc["jobs"]})
        print(markdown(rows), flush=True)

    for pretext in singles:
        measure(pretext)
    for combo in args.combos:
        if combo == "auto":
            ranked = sorted(rows[1:], key=lambda r: -r["downstream"].get("dice_mean", -1.0))
            if len(ranked) < 2:
                continue
            combo = ",".join(r["pretext"] for r in ranked[:2])
        measure(combo)
    best = max(rows[1:], key=lambda r: r["downstream"].get("dice_mean", float("-inf")))
    name = args.name or ("pretext_quick" if args.quick else "pretext")
    doc_out = {
        "config": {**{k: v for k, v in vars(args).items() if k not in ("out_dir", "work_dir")},
                   "quality": base.__dict__},
        "machine": machine_line(),
        "command": " ".join(["python benchmarks/pretext.py",
                             *(argv if argv is not None else sys.argv[1:])]),
        "rows": rows,
        "best_by_dice": best["pretext"],
        "seconds": time.perf_counter() - started,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{name}.json").write_text(json.dumps(doc_out, indent=2, default=str))
    table = markdown(rows)
    (args.out_dir / f"{name}.md").write_text(
        f"# Pretext benchmark\n\n`{doc_out['command']}` on {doc_out['machine']}, "
        f"{doc_out['seconds'] / 60:.1f} min.\n\n{table}\n\nBest by Dice: {best['pretext']}\n")
    bar_chart(rows, args.out_dir / f"{name}.png")
    print(table)
    print(f"\nbest by Dice: {best['pretext']}; saved {args.out_dir / (name + '.json')} in "
          f"{doc_out['seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
