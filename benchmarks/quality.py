"""Is federated pretraining worth joining? The pre-registered benchmark of docs/benchmark-protocol.md.

Six phantom sites, one scanner each (benchmarks/phantom_profiles.toml): sites 0 to 3
pretrain together; a site of the federation (in_federation) and a site no pretraining saw
(unseen_site) each fine-tune on a few of their own labels, with early stopping, and are
scored on their own test studies. ``--role validation`` evaluates sites 2 and 4 and is
where every choice is made; ``--role test`` evaluates sites 3 and 5 and is run once, by
the final committed command. Per seed (the unit: a fresh pretraining of every variant and
a fresh labelled draw), on the same labelled studies:

    scratch      no pretraining
    local_only   the evaluated site pretrains alone on its pool studies with the compute it
                 would spend in the federation
    federated    fedmm's federated pretraining through Flower's simulation engine
    centralized  the same pretraining on the federation's studies pooled (in_federation only)

and on request (--variants, in_federation only) the controls federated_iid (the federation
on virtual sites that each mix every scanner), cyclic (cyclic weight transfer) and the
update-DP variants federated_dp / federated_dp_weak (Flower's client-side fixed clipping
at the median update norm of the same seed's federated run, noise multiplier 1.0 / 0.1),
and federated_bf16 (the sites' replies sent as bfloat16; paired against federated).

    python benchmarks/quality.py --role validation  # choices are made on this one
    python benchmarks/quality.py --role test        # the final committed command, run once
    python benchmarks/quality.py --quick            # a minutes-long smoke version (tests run it)

Pretrained encoders are recorded per seed in --work-dir, keyed on the code version and every
setting they depend on (simulations/benchmark_pretraining.py): an interrupted run resumes
after its last finished pretraining, and the test role reuses the validation role's
federation. Writes <name>.json, <name>.md and <name>.png to --out-dir (name: quality for the
test role, quality_validation, quality_quick), plus a report.html of seed 0's federated run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import torch

from shared.config import AdaDNConfig
from simulations.benchmark_pretraining import (
    ADADN_TASKS,
    FEDERATION_VARIANTS,
    TRANSFER_VARIANTS,
    UPDATE_DP_VARIANTS,
    PretrainSettings,
    adadn_tasks,
    code_version,
    finished_pretraining,
)
from simulations.benchmark_provenance import code_commit
from simulations.benchmark_sites import EVALUATED, SETTINGS, SITES, SiteRoles, arrange_sites
from simulations.forest_plot import draw_forest
from simulations.paired_stats import goals, summary

if TYPE_CHECKING:
    from client.finetune.config import FinetuneTask

VARIANTS = ("scratch", "local_only", "federated", "centralized")
CONTROL_VARIANTS = ("federated_iid", "cyclic", *UPDATE_DP_VARIANTS, *TRANSFER_VARIANTS)
#: The variants fine-tuned in the unseen_site setting (the others pretrain on the federation
#: only to compare with it in_federation).
UNSEEN_VARIANTS = ("scratch", "local_only", "federated")
#: The paired differences reported (Dice points, per seed), when both variants ran.
COMPARISONS = {"federated_minus_scratch": ("federated", "scratch"),
               "federated_minus_local_only": ("federated", "local_only"),
               "centralized_minus_scratch": ("centralized", "scratch"),
               **{f"{v}_minus_scratch": (v, "scratch") for v in CONTROL_VARIANTS},
               # What sending the replies as bfloat16 costs (issue 16 §5), paired per seed.
               **{f"{v}_minus_federated": (v, "federated") for v in TRANSFER_VARIANTS}}
RESULTS = Path(__file__).parent / "results"
PROFILES = Path(__file__).resolve().parent / "phantom_profiles.toml"


@dataclass(frozen=True)
class QualityConfig:
    """The protocol's settings (docs/benchmark-protocol.md); change them only by a choice
    made on the validation role and recorded there."""

    role: str = "validation"
    phantom_seed: int = 0
    subjects_per_site: int = 40
    test_studies: int = 10              # per evaluated site, never seen by pretraining
    spacing_mm: float = 2.0
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    label_fractions: tuple[float, ...] = (0.1, 1.0)
    tasks: tuple[FinetuneTask, ...] = ("segmentation", "classification")
    rounds: int = 6
    local_steps: int = 30
    pretrain_crop: int = 32
    finetune_steps: int = 1000          # the most steps; early stopping ends most runs sooner
    classify_steps: int = 1000
    eval_every: int = 50
    patience: int = 4
    early_stopping_fraction: float = 0.2
    finetune_crop: int = 32
    linear_probe: bool = False          # fine-tuning controls (client/finetune/config.py)
    encoder_lr_scale: float = 1.0
    encoder_frozen_steps: int = 0
    augment_intensity: bool = False
    min_region_ml: float = 0.0
    workers: int = 2
    pretext: str = "plane_intersection,variance_covariance:0.5"  # fedmm's default, --pretext form
    strategy: str = "fedavg"
    site_local_norm: bool = True        # FedBN-style: normalization affine stays on the sites
    adadn_target: str | None = None     # None: AdaDN's default target (the pool)
    adadn_interpolate: bool = False     # AdaDN blends source and target statistics (l ~ U(0, 1))
    adadn_matching: str | None = None   # None: AdaDN's default matching (moments)
    variants: tuple[str, ...] = VARIANTS
    update_dp_clip: float | None = None  # update-DP clipping norm; None: median update norm

    @classmethod
    def quick(cls) -> QualityConfig:
        return cls(subjects_per_site=4, test_studies=1, spacing_mm=4.0, seeds=(0, 1),
                   label_fractions=(0.5, 1.0), rounds=1, local_steps=2, pretrain_crop=16,
                   finetune_steps=4, classify_steps=4, eval_every=2, patience=1, finetune_crop=16)

    def pretrain_settings(self) -> PretrainSettings:
        return PretrainSettings(rounds=self.rounds, local_steps=self.local_steps,
                                crop=self.pretrain_crop, spacing_mm=self.spacing_mm,
                                pretext=self.pretext, strategy=self.strategy,
                                site_local_norm=self.site_local_norm,
                                adadn_target=self.adadn_target,
                                adadn_interpolate=self.adadn_interpolate,
                                adadn_matching=self.adadn_matching,
                                update_dp_clip=self.update_dp_clip)

    def setting_variants(self, setting: str) -> list[str]:
        return [v for v in self.variants if setting == "in_federation" or v in UNSEEN_VARIANTS]


@dataclass
class Job:
    variant: str
    setting: str
    site: str                 # the evaluated site
    encoder: str | None
    task: FinetuneTask
    fraction: float
    seed: int                 # also the fine-tuning seed: labelled draw, split, crops, head
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    best_step: int | None = None
    steps_run: int = 0


def seed_jobs(cfg: QualityConfig, *, seed: int, roles: SiteRoles, encoders: dict[str, str]) -> list[Job]:
    """Every fine-tuning job of one seed: setting x task x label fraction x variant, all
    variants of a (setting, fraction) on the same labelled draw (paired comparisons)."""
    jobs: list[Job] = []
    for setting, site in roles.evaluated.items():
        for task in cfg.tasks:
            for fraction in cfg.label_fractions:
                for variant in cfg.setting_variants(setting):
                    encoder = (None if variant == "scratch" else
                               encoders[f"local_only/{site}"] if variant == "local_only" else
                               encoders[variant])
                    jobs.append(Job(variant, setting, site, encoder, task, fraction, seed))
    return jobs


def _worker_init() -> None:
    torch.set_num_threads(1)  # two single-threaded fine-tunes use two cores better than one


def _run_job(job: Job, cfg_json: str, eval_root: str, cache_dir: str) -> Job:
    from client.finetune import FinetuneConfig, run_finetune
    from shared.config import DataConfig

    cfg = json.loads(cfg_json)
    ft = FinetuneConfig(
        task=job.task, label_fraction=job.fraction, seed=job.seed,
        steps=cfg["finetune_steps"] if job.task == "segmentation" else cfg["classify_steps"],
        early_stopping=True, eval_every=cfg["eval_every"], patience=cfg["patience"],
        early_stopping_fraction=cfg["early_stopping_fraction"],
        crop_size=cfg["finetune_crop"], class_size=max(32, cfg["finetune_crop"]),
        # The encoder learning-rate scale protects pretrained features; scratch's encoder is
        # new, so it trains at the full rate like the rest of the network.
        linear_probe=cfg["linear_probe"],
        encoder_lr_scale=cfg["encoder_lr_scale"] if job.encoder is not None else 1.0,
        encoder_frozen_steps=cfg["encoder_frozen_steps"] if job.encoder is not None else 0,
        augment_intensity=cfg["augment_intensity"], min_region_ml=cfg["min_region_ml"],
        data=DataConfig(spacing_mm=cfg["spacing_mm"]),
    )
    res = run_finetune(encoder=job.encoder, cfg=ft, data_root=Path(eval_root),
                       train_sites=[SiteRoles.pool(job.site)], test_sites=[SiteRoles.test(job.site)],
                       cache_dir=Path(cache_dir))
    job.metrics, job.seconds = res.metrics, res.seconds
    job.best_step, job.steps_run = res.best_step, len(res.losses)
    return job


METRICS = (("segmentation", "dice_mean", "dice"), ("segmentation", "dice_wt", "dice_wt"),
           ("segmentation", "dice_tc", "dice_tc"), ("segmentation", "dice_et", "dice_et"),
           ("segmentation", "dice_present_mean", "dice_present"),
           ("segmentation", "false_positive_wt", "false_positive_wt"),
           ("segmentation", "false_positive_et", "false_positive_et"),
           ("classification", "acc", "acc"), ("classification", "balanced_acc", "balanced_acc"),
           ("classification", "auc", "auc"))


def summarize(jobs: list[Job], cfg: QualityConfig) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """``results[setting][fraction][variant]``: each metric's mean and sd over seeds, and
    the median step early stopping kept (segmentation)."""
    out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for setting in SETTINGS:
        for fraction in cfg.label_fractions:
            row: dict[str, dict[str, float]] = {}
            for variant in cfg.setting_variants(setting):
                mine = [j for j in jobs if (j.setting, j.fraction, j.variant) == (setting, fraction, variant)]
                entry: dict[str, float] = {}
                for task, key, name in METRICS:
                    vals = [j.metrics[key] for j in mine if j.task == task and key in j.metrics]
                    vals = [v for v in vals if v == v]  # drop NaN (e.g. AUC with one class)
                    if vals:
                        entry[f"{name}_mean"] = statistics.fmean(vals)
                        entry[f"{name}_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
                steps = [j.best_step for j in mine if j.task == "segmentation" and j.best_step]
                if steps:
                    entry["best_step_median"] = float(statistics.median(steps))
                if entry:
                    row[variant] = entry
            if row:
                out.setdefault(setting, {})[str(fraction)] = row
    return out


def paired_differences(jobs: list[Job], cfg: QualityConfig) -> dict[str, dict[str, dict[str, Any]]]:
    """``paired[setting][fraction][comparison]``: per seed, the first variant's segmentation
    Dice minus the second's on the same labelled draw, in points, with mean and 95 % interval."""
    dice = {(j.setting, j.fraction, j.variant, j.seed): 100 * j.metrics["dice_mean"]
            for j in jobs if j.task == "segmentation" and "dice_mean" in j.metrics}
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for setting in SETTINGS:
        for fraction in cfg.label_fractions:
            for name, (a, b) in COMPARISONS.items():
                per_seed = [dice[(setting, fraction, a, s)] - dice[(setting, fraction, b, s)]
                            for s in cfg.seeds if (setting, fraction, a, s) in dice
                            and (setting, fraction, b, s) in dice]
                if per_seed:
                    out.setdefault(setting, {}).setdefault(str(fraction), {})[name] = summary(per_seed)
    return out


def budget_check(results: dict[str, Any], cfg: QualityConfig) -> dict[str, Any]:
    """Does scratch score higher with the most labels than with the fewest (in_federation)?
    If not, fine-tuning is not converging and the comparison is not to be read."""
    low, high = str(min(cfg.label_fractions)), str(max(cfg.label_fractions))
    if low == high:
        return {"holds": "not run (one label fraction)"}
    row = results.get("in_federation", {})
    try:
        d_low, d_high = row[low]["scratch"]["dice_mean"], row[high]["scratch"]["dice_mean"]
    except KeyError:
        return {"holds": "not run"}
    return {"holds": d_high > d_low, f"scratch_dice_at_{high}": d_high, f"scratch_dice_at_{low}": d_low}


def machine_line() -> str:
    """The machine a benchmark ran on, in one line."""
    gpu = f"CUDA {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no GPU"
    return (f"{platform.platform()}, {platform.processor() or 'cpu'}, {mp.cpu_count()} cores, "
            f"torch {torch.__version__}, {gpu}")


def phantom(cfg: QualityConfig) -> tuple[Path, dict[str, Any]]:
    """The benchmark phantom (generated once, cached) and the key of its data."""
    from simulations.phantom import PhantomConfig, generate_phantom
    from simulations.simulate import cache_root

    root = cache_root() / (f"quality-{SITES}x{cfg.subjects_per_site}-{cfg.spacing_mm:g}mm-"
                           f"p{cfg.phantom_seed}")
    generate_phantom(PhantomConfig(sites=SITES, subjects_per_site=cfg.subjects_per_site,
                                   spacing_mm=cfg.spacing_mm, seed=cfg.phantom_seed,
                                   profiles_file=PROFILES), root, workers=2, progress=False)
    key = {"sites": SITES, "subjects_per_site": cfg.subjects_per_site, "spacing_mm": cfg.spacing_mm,
           "phantom_seed": cfg.phantom_seed, "test_studies": cfg.test_studies,
           "profiles_sha256": hashlib.sha256(PROFILES.read_bytes()).hexdigest()}
    return root, key


def run_quality(cfg: QualityConfig, *, work: Path) -> dict[str, Any]:
    """Pretrain every variant for every seed, fine-tune them all; the results document."""
    started = time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    data_root, data_key = phantom(cfg)
    roles = arrange_sites(data_root, work / "sites", role=cfg.role, test_studies=cfg.test_studies,
                          phantom_seed=cfg.phantom_seed)
    print(f"phantom {data_root}; federation {roles.federation}; role {cfg.role}: "
          f"{roles.evaluated}; pretext {cfg.pretext}, strategy {cfg.strategy}", flush=True)
    alone = {site: (roles.pretrain_root / site if setting == "in_federation" else roles.pool_dir(site))
             for setting, site in roles.evaluated.items()}
    wanted = [v for v in cfg.variants if v in FEDERATION_VARIANTS]
    if "local_only" in cfg.variants:
        wanted += [f"local_only/{site}" for site in alone]
    jobs: list[Job] = []
    pretraining: dict[int, dict[str, Any]] = {}
    for seed in cfg.seeds:
        pretraining[seed] = enc = finished_pretraining(
            cfg.pretrain_settings(), wanted, seed=seed, data_key=data_key,
            federation_root=roles.pretrain_root, federation=roles.federation, alone=alone, work=work)
        print(f"seed {seed}: pretrained in {({k: round(v) for k, v in enc['seconds'].items()})}", flush=True)
        jobs += seed_jobs(cfg, seed=seed, roles=roles, encoders=enc["encoders"])
    t_ft = time.perf_counter()
    common = (json.dumps(asdict(cfg)), str(roles.eval_root), str(work / "finetune-cache"))
    done: list[Job] = []
    with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=mp.get_context("spawn"),
                             initializer=_worker_init) as pool:
        futures = [pool.submit(_run_job, job, *common) for job in jobs]
        for future in as_completed(futures):
            done.append(future.result())
            if len(done) % 10 == 0 or len(done) == len(jobs):
                print(f"fine-tuned {len(done)}/{len(jobs)} ({(time.perf_counter() - t_ft) / 60:.1f} min)",
                      flush=True)
    done = sorted(done, key=lambda j: (j.seed, j.setting, j.task, j.fraction, j.variant))
    results = summarize(done, cfg)
    paired = paired_differences(done, cfg)
    return {
        "protocol": "docs/benchmark-protocol.md",
        "role": cfg.role,
        "evaluated_sites": roles.evaluated,
        "seeds": list(cfg.seeds),
        "phantom_seed": cfg.phantom_seed,
        "config": asdict(cfg),
        "machine": machine_line(),
        "git_commit": code_commit(),
        "code_version": code_version(),
        "paired_dice_points": paired,
        "goals": goals(paired, fraction=str(min(cfg.label_fractions))),
        "budget_check": budget_check(results, cfg),
        "results": results,
        "seconds": {"total": time.perf_counter() - started, "finetune": time.perf_counter() - t_ft,
                    "pretrain": {str(k): v["seconds"] for k, v in pretraining.items()}},
        "pretraining_reused": {str(k): v["reused"] for k, v in pretraining.items()},
        "jobs": [asdict(j) for j in done],
        "fed_run": pretraining[cfg.seeds[0]].get("fed_run"),
        "pretrain_root": str(roles.pretrain_root), "federation": roles.federation,
        "update_privacy": {str(seed): p["update_privacy"] for seed, p in pretraining.items()
                           if p.get("update_privacy")},
    }


def paired_markdown(paired: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = ["| setting | labels | difference (Dice points) | per seed | mean | 95 % interval |",
             "|---|---|---|---|---|---|"]
    for setting, by_fraction in paired.items():
        for fraction, diffs in by_fraction.items():
            for name, d in diffs.items():
                interval = (f"[{d['ci95'][0]:+.1f}, {d['ci95'][1]:+.1f}]" if d["ci95"] else "n/a")
                seeds = ", ".join(f"{x:+.1f}" for x in d["per_seed"])
                lines.append(f"| {setting} | {float(fraction):.0%} | {name} | {seeds} | "
                             f"{d['mean']:+.1f} | {interval} |")
    return "\n".join(lines)


def results_markdown(results: dict[str, Any]) -> str:
    lines = ["| setting | labels | variant | Dice mean (WT/TC/ET) | Dice on cases with the region | "
             "accuracy | balanced acc | AUC | kept step (median) |", "|---|---|---|---|---|---|---|---|---|"]

    def fmt(e: dict[str, float], k: str) -> str:
        return f"{e[k + '_mean']:.3f} ± {e[k + '_std']:.3f}" if k + "_mean" in e else "n/a"

    for setting, by_fraction in results.items():
        for fraction, row in by_fraction.items():
            for variant, e in row.items():
                regions = "/".join(f"{e.get(f'dice_{r}_mean', float('nan')):.2f}" for r in ("wt", "tc", "et"))
                step = f"{e['best_step_median']:.0f}" if "best_step_median" in e else "n/a"
                lines.append(f"| {setting} | {float(fraction):.0%} | {variant} | {fmt(e, 'dice')} "
                             f"({regions}) | {fmt(e, 'dice_present')} | {fmt(e, 'acc')} | "
                             f"{fmt(e, 'balanced_acc')} | {fmt(e, 'auc')} | {step} |")
    return "\n".join(lines)


def update_privacy_markdown(spent: dict[str, dict[str, dict[str, Any]]]) -> str:
    """What each update-DP variant spent and clipped at, per seed (empty when none ran)."""
    if not spent:
        return ""
    rows = ["| variant | noise multiplier | clipping norm per seed | epsilon (delta) per seed |",
            "|---|---|---|---|"]
    for variant, noise in UPDATE_DP_VARIANTS.items():
        cards = [p[variant] for p in spent.values() if variant in p]
        if cards:
            clips = ", ".join(f"{c['clipping_norm']:.3g}" for c in cards)
            eps = ", ".join(f"{c['epsilon']:.1f} ({c['delta']:g})" for c in cards)
            rows.append(f"| {variant} | {noise:g} | {clips} | {eps} |")
    return ("\nUpdate DP (Flower's client-side fixed clipping and Gaussian noise, RDP accounting at "
            "the level of sites, over all rounds of the run):\n\n" + "\n".join(rows) + "\n")


def forest_plot(paired: dict[str, dict[str, dict[str, Any]]], path: Path) -> None:
    """Each paired difference: its seeds as dots, its mean and 95 % interval as a bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(f"{setting}, {float(fraction):.0%}: {name.replace('_minus_', ' - ')}", d)
            for setting, by_fraction in paired.items() for fraction, diffs in by_fraction.items()
            for name, d in diffs.items()]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.2), dpi=100)
    draw_forest(ax, [d for _, d in rows])
    ax.set_yticks(range(len(rows)), [label for label, _ in rows], fontsize=8)
    ax.set_xlabel("Dice difference (points): seeds (grey), mean and 95 % t-interval (blue)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_outputs(doc: dict[str, Any], out_dir: Path, name: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(doc, indent=2))
    g, budget = doc["goals"], doc["budget_check"]
    judged = ("judged here: this is the test role, run once" if doc["role"] == "test" else
              "read here to make choices; the goals are judged only on the test role")
    (out_dir / f"{name}.md").write_text(
        f"# Quality benchmark, {doc['role']} role\n\n`{doc['command']}`\n\n"
        f"Protocol: docs/benchmark-protocol.md. Evaluated sites: {doc['evaluated_sites']}. "
        f"Seeds {doc['seeds']}, phantom seed {doc['phantom_seed']}. Commit {doc['git_commit']}, "
        f"code version {doc['code_version'][:12]}. {doc['machine']}, "
        f"{doc['seconds']['total'] / 60:.1f} min.\n\n"
        f"## Goals at {g['label_fraction']:.0%} labels, in_federation ({judged})\n\n"
        f"- federated beats scratch ({g['rules']['federated_beats_scratch']}): "
        f"**{g['federated_beats_scratch']}**\n"
        f"- federated beats local_only ({g['rules']['federated_beats_local_only']}): "
        f"**{g['federated_beats_local_only']}**\n"
        f"- reported, not a goal: federated reaches 90 % of centralized's gain: "
        f"{g['reaches_90pct_of_centralized_gain']}\n"
        f"- fine-tuning budget check (scratch scores higher with the most labels than with the "
        f"fewest): {budget['holds']}\n\n"
        f"## Paired differences, one per seed\n\n{paired_markdown(doc['paired_dice_points'])}\n\n"
        f"## Scores on the evaluated sites' test studies (mean ± sd over seeds)\n\n"
        f"{results_markdown(doc['results'])}\n" + update_privacy_markdown(doc["update_privacy"]))
    forest_plot(doc["paired_dice_points"], out_dir / f"{name}.png")


LISTED: tuple[tuple[str, Any, Any, str], ...] = (  # (option, parse, valid?, what is valid)
    ("seeds", int, lambda x: True, ""),
    ("variants", str, lambda x: x in (*VARIANTS, *CONTROL_VARIANTS),
     f"some of {', '.join((*VARIANTS, *CONTROL_VARIANTS))}"),
    ("tasks", str, lambda x: x in ("segmentation", "classification"),
     "segmentation and/or classification"),
    ("label_fractions", float, lambda x: 0 < x <= 1, "fractions in (0, 1]"))
KNOBS = ("rounds", "local_steps", "finetune_steps", "classify_steps", "phantom_seed",
         "subjects_per_site")


def pretext_tasks(pretext: str, parser: argparse.ArgumentParser) -> list[dict[str, Any]]:
    """``--pretext`` as task entries; an unknown task name ends the parse with its message."""
    from shared.config import ConfigError
    from shared.pretext_option import parse_pretext_option

    try:
        return parse_pretext_option(pretext)
    except ConfigError as err:
        parser.error(str(err))


def parse_config(argv: list[str] | None) -> tuple[QualityConfig, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=tuple(EVALUATED), default="validation",
                        help="validation (sites 2 and 4: make choices here) or test (sites 3 and 5: "
                        "the final committed run, once)")
    parser.add_argument("--quick", action="store_true", help="minutes-long smoke version")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--work-dir", type=Path, default=Path("runs") / "quality",
                        help="pretrained encoders with their runs' logs and reports, reused when "
                        "the code version and settings match (default runs/quality); the "
                        "preprocessed studies are kept once per machine, under FEDMM_CACHE "
                        "(default ~/.cache/fedmm)/preprocessed")
    parser.add_argument("--name", default=None, help="results file stem (default quality for the "
                        "test role, quality_validation, quality_quick)")
    for knob in KNOBS:
        parser.add_argument(f"--{knob.replace('_', '-')}", type=int, default=None,
                            help=f"override {knob} (default {getattr(QualityConfig(), knob)})")
    parser.add_argument("--pretext", default=None,
                        help=f"pretext tasks, 'a,b:0.5' (default {QualityConfig().pretext})")
    parser.add_argument("--strategy", default=None, help="aggregation strategy (default fedavg)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2,3,4)")
    parser.add_argument("--variants", default=None,
                        help=f"comma-separated variants (default {','.join(VARIANTS)}; controls: "
                        f"{','.join(CONTROL_VARIANTS)})")
    parser.add_argument("--update-dp-clip", type=float, default=None,
                        help="clipping norm of the update-DP variants (default: the median update "
                        "norm of the same seed's federated run without DP)")
    parser.add_argument("--tasks", default=None,
                        help="comma-separated fine-tuning tasks (default segmentation,classification)")
    parser.add_argument("--label-fractions", default=None,
                        help="comma-separated label fractions (default 0.1,1.0)")
    parser.add_argument("--site-local-norm", choices=("true", "false"), default=None,
                        help="keep normalization affine on the sites (FedBN) during pretraining")
    parser.add_argument("--adadn-target", default=None,
                        choices=get_args(AdaDNConfig.model_fields["target"].annotation),
                        help="where AdaDN's target statistics come from during pretraining "
                        f"(default {AdaDNConfig().target}); needs an AdaDN task in --pretext "
                        f"({', '.join(ADADN_TASKS)})")
    parser.add_argument("--adadn-interpolate", action="store_const", const=True, default=None,
                        help="AdaDN blends each view's own statistics with the target's, "
                             "l ~ U(0, 1), instead of moving all the way (needs an AdaDN task)")
    parser.add_argument("--adadn-matching", default=None,
                        choices=get_args(AdaDNConfig.model_fields["matching"].annotation),
                        help=f"how AdaDN moves a view to its target (default "
                             f"{AdaDNConfig().matching}; histogram: quantile mapping; needs an "
                             "AdaDN task)")
    parser.add_argument("--linear-probe", action="store_const", const=True, default=None,
                        help="fine-tuning control: freeze every encoder, train the heads only")
    parser.add_argument("--encoder-lr-scale", type=float, default=None,
                        help="fine-tuning control: a pretrained encoder's learning rate x this "
                             "(default 1; scratch always trains at the full rate)")
    parser.add_argument("--encoder-frozen-steps", type=int, default=None,
                        help="fine-tuning control: a pretrained encoder stays frozen for the "
                             "first N steps (LP-FT; default 0; scratch always trains from step 1)")
    parser.add_argument("--augment-intensity", action="store_const", const=True, default=None,
                        help="fine-tuning control: per-modality intensity augmentation")
    parser.add_argument("--min-region-ml", type=float, default=None,
                        help="fine-tuning control: remove predicted components smaller than this "
                             "many mL before scoring (default 0: none)")
    args = parser.parse_args(argv)
    cfg = QualityConfig.quick() if args.quick else QualityConfig()
    overrides: dict[str, Any] = {k: getattr(args, k) for k in (
        *KNOBS, "pretext", "strategy", "adadn_target", "adadn_interpolate", "adadn_matching",
        "linear_probe", "encoder_lr_scale",
        "encoder_frozen_steps", "augment_intensity", "min_region_ml",
        "update_dp_clip", "role") if getattr(args, k) is not None}
    for option, parse, valid, expected in LISTED:
        if raw := getattr(args, option):
            try:
                values = tuple(parse(x) for x in raw.split(","))
            except ValueError:
                parser.error(f"--{option.replace('_', '-')}: expected comma-separated "
                             f"{parse.__name__} values, got {raw!r}")
            if bad := [x for x in values if not valid(x)]:
                parser.error(f"--{option.replace('_', '-')}: expected {expected}, got {bad}")
            overrides[option] = values
    if args.site_local_norm is not None:
        overrides["site_local_norm"] = args.site_local_norm == "true"
    cfg = replace(cfg, **overrides)
    if cfg.encoder_frozen_steps < 0 or (cfg.encoder_frozen_steps and cfg.linear_probe):
        parser.error(f"--encoder-frozen-steps: expected 0 or more steps, without --linear-probe "
                     f"(which freezes the encoder for the whole run); got "
                     f"{cfg.encoder_frozen_steps}{' with --linear-probe' if cfg.linear_probe else ''}")
    if cfg.subjects_per_site < cfg.test_studies + 2:
        parser.error(f"--subjects-per-site: expected at least {cfg.test_studies + 2} (the "
                     f"{cfg.test_studies} test studies of an evaluated site plus 2 pool studies "
                     f"to label), got {cfg.subjects_per_site}")
    if not 0 <= cfg.min_region_ml <= 100:
        parser.error(f"--min-region-ml: expected a volume from 0 to 100 mL, got {cfg.min_region_ml}")
    adadn = cfg.pretrain_settings().adadn()
    if adadn and not adadn_tasks(pretext_tasks(cfg.pretext, parser)):
        options = ", ".join(f"--adadn-{k}" for k in adadn)
        parser.error(f"{options}: expected a --pretext with an AdaDN task "
                     f"({', '.join(ADADN_TASKS)}), got {cfg.pretext!r}; add one, e.g. "
                     f"--pretext {ADADN_TASKS[0]}")
    if (cfg.update_dp_clip is None and "federated" not in cfg.variants
            and any(v in cfg.variants for v in UPDATE_DP_VARIANTS)):
        parser.error("--variants: the update-DP variants take their clipping norm from the "
                     "federated run without DP, which is not among them; add federated or "
                     "pass --update-dp-clip")
    return cfg, args


def main(argv: list[str] | None = None) -> int:
    cfg, args = parse_config(argv)
    name = args.name or ("quality_quick" if args.quick else
                         "quality" if cfg.role == "test" else f"quality_{cfg.role}")
    if cfg.role == "test" and not args.quick:
        print("role test: the protocol runs the test sites once, by the final committed command "
              "(docs/benchmark-protocol.md)", flush=True)
    doc = run_quality(cfg, work=args.work_dir.resolve())
    doc["command"] = " ".join(["python benchmarks/quality.py",
                               *(argv if argv is not None else sys.argv[1:])])
    write_outputs(doc, args.out_dir, name)
    if doc["fed_run"] and Path(doc["fed_run"]).is_dir():
        from simulations.report import write_run_report

        report = write_run_report(Path(doc["fed_run"]), data_root=Path(doc["pretrain_root"]),
                                  site_dirs=doc["federation"],
                                  downstream=doc["results"].get("in_federation"),
                                  title=f"Quality benchmark: federated run, seed {cfg.seeds[0]}")
        print(f"report: {report}")
    print(results_markdown(doc["results"]))
    print(f"\n{paired_markdown(doc['paired_dice_points'])}")
    print(f"\ngoals: {json.dumps(doc['goals'])}\nbudget check: {json.dumps(doc['budget_check'])}")
    print(f"saved {args.out_dir / (name + '.json')} in {doc['seconds']['total'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
