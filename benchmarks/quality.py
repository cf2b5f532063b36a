"""Is pretraining worth it? scratch vs local_only vs federated vs centralized, leave-site-out.

On the embedded phantom (N sites with different scanner profiles), the last site is held
out for testing; the others pretrain (or not) and provide the labelled fine-tuning studies.
For every seed, each variant is fine-tuned with the same seeds, splits and budget, for each
label fraction and each of ``label_subsets`` seeded draws of the labelled studies (shared by
all variants, so differences are paired), on segmentation (Dice WT/TC/ET) and
classification (enhancing vs not):

    scratch      no pretraining
    local_only   each training site pretrains alone with its federated share of compute;
                 each encoder is fine-tuned and the results are averaged
    federated    fedmm's federated pretraining through Flower's simulation engine
    centralized  the same pretraining on all training sites' data pooled in one place

and, on request (--variants), two controls that take federation apart, and the federated
variant with differential privacy on its updates at two noise levels:

    federated_iid  the same federation on virtual sites that each hold a random share of all
                   training studies (every site mixes every scanner)
    cyclic         cyclic weight transfer: one model visits the real sites in turn each
                   round, with their local steps, and is never averaged
    federated_dp, federated_dp_weak
                   federated with [privacy.updates]: Flower's client-side fixed clipping,
                   noise multiplier 1.0 and 0.1 (the epsilon each run spent is in its model
                   card and in the results). The clipping norm is fixed by a rule, not
                   tuned: the median of the training sites' update norms over all rounds of
                   the same seed's federated run without DP (metrics.json, update-norm),
                   so clipping bites about half of the updates; --update-dp-clip sets one.

    python benchmarks/quality.py            # the committed default (about 40 min on 2 cores)
    python benchmarks/quality.py --quick    # a minutes-long smoke version (the test suite runs it)
    python benchmarks/quality.py --linear-probe --name quality_linear_probe
                                            # a fine-tuning control: reuses the encoders the
                                            # default run left in --work-dir, fine-tunes again

Pretrained encoders are recorded per seed in --work-dir (pretraining-seed<N>.json) and
reused by a later run with the same pretraining settings, so an interrupted run resumes
after its last finished seed and fine-tuning controls cost only their fine-tuning.

Writes benchmarks/results/quality.json, quality.md and quality.png (or --out-dir), plus a
report.html of the seed-0 federated run with the downstream table.
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing as mp
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from simulations.paired_stats import goals, standard_error

VARIANTS = ("scratch", "local_only", "federated", "centralized")
CONTROL_VARIANTS = ("federated_iid", "cyclic")
#: The cost of update DP ([privacy.updates]): the federated variant with Flower's client-side
#: fixed clipping (median_update_norm, or --update-dp-clip) and these noise multipliers.
UPDATE_DP_VARIANTS = {"federated_dp_weak": 0.1, "federated_dp": 1.0}
OPTIONAL_VARIANTS = (*CONTROL_VARIANTS, *UPDATE_DP_VARIANTS)
RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True)
class QualityConfig:
    sites: int = 4                      # the last one is held out for testing
    subjects_per_site: int = 10
    spacing_mm: float = 2.0
    seeds: tuple[int, ...] = (0, 1, 2)
    label_fractions: tuple[float, ...] = (0.1, 1.0)
    # The seed also draws the labelled studies (3 at 10 %), and one draw moves a variant by
    # 8-13 Dice points: every seed fine-tunes on several draws, each shared by all variants
    # (per seed the draws are averaged first; quality_plane_intersection_only.md had one).
    label_subsets: int = 3
    tasks: tuple[str, ...] = ("segmentation", "classification")
    # 4 x 15 steps of pretraining moved downstream Dice by at most a few points, within
    # seed noise (benchmarks/results/pretext_4x15steps.md): pretraining gets 6 x 30 steps.
    rounds: int = 6
    local_steps: int = 30
    pretrain_crop: int = 32
    # 50 steps left every variant at Dice ~0.06 (nothing learnt, nothing to compare; see
    # benchmarks/results/quality_50steps.md): fine-tuning must be long enough for scratch to learn.
    finetune_steps: int = 250
    classify_steps: int = 250
    finetune_crop: int = 32
    linear_probe: bool = False          # fine-tuning controls (client/finetune/config.py)
    encoder_lr_scale: float = 1.0
    augment_intensity: bool = False
    workers: int = 2
    pretext: str = "plane_intersection,variance_covariance:0.5"  # fedmm's default, --pretext form
    strategy: str = "fedavg"
    site_local_norm: bool = True        # FedBN-style: normalization affine stays on the sites
    variants: tuple[str, ...] = VARIANTS
    update_dp_clip: float | None = None  # update-DP clipping norm; None: median_update_norm

    @classmethod
    def quick(cls) -> QualityConfig:
        return cls(sites=3, subjects_per_site=4, spacing_mm=4.0, seeds=(0,),
                   label_fractions=(0.5, 1.0), label_subsets=1, rounds=1, local_steps=2, pretrain_crop=16,
                   finetune_steps=2, classify_steps=2, finetune_crop=16)


@dataclass
class Job:
    variant: str
    encoder: str | None
    task: str
    fraction: float
    seed: int
    subset: int = 0           # which seeded draw of the labelled studies (finetune_seed)
    site: str = ""            # local_only: which site's encoder
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def finetune_seed(seed: int, subset: int) -> int:
    """The fine-tuning seed (labelled subset, crops, head init) of a seed's ``subset``-th draw;
    draw 0 uses the seed itself."""
    return seed + 1000 * subset


def seed_jobs(cfg: QualityConfig, *, seed: int, encoders: dict[str, Any]) -> list[Job]:
    """Every fine-tuning job of one seed: each variant's encoder(s) x task x label fraction x
    labelled subset; all variants share each subset (paired comparisons)."""
    jobs: list[Job] = []
    for task in cfg.tasks:
        for fraction in cfg.label_fractions:
            for subset in range(cfg.label_subsets):
                common = {"task": task, "fraction": fraction, "seed": seed, "subset": subset}
                if "scratch" in cfg.variants:
                    jobs.append(Job("scratch", None, **common))
                for variant in ("federated", "centralized", *OPTIONAL_VARIANTS):
                    if variant in cfg.variants:
                        jobs.append(Job(variant, encoders[variant], **common))
                if "local_only" in cfg.variants:
                    jobs += [Job("local_only", path, site=s, **common)
                             for s, path in encoders["local_only"].items()]
    return jobs


def _worker_init() -> None:
    torch.set_num_threads(1)  # two single-threaded fine-tunes use two cores better than one


def _run_job(job: Job, cfg_json: str, data_root: str, train_sites: list[str],
             test_sites: list[str], cache_dir: str) -> Job:
    from client.finetune import FinetuneConfig, run_finetune
    from shared.config import DataConfig

    cfg = json.loads(cfg_json)
    ft = FinetuneConfig(
        task=job.task, label_fraction=job.fraction, seed=finetune_seed(job.seed, job.subset),
        steps=cfg["finetune_steps"] if job.task == "segmentation" else cfg["classify_steps"],
        crop_size=cfg["finetune_crop"], class_size=max(32, cfg["finetune_crop"]),
        linear_probe=cfg["linear_probe"], encoder_lr_scale=cfg["encoder_lr_scale"],
        augment_intensity=cfg["augment_intensity"], data=DataConfig(spacing_mm=cfg["spacing_mm"]),
    )
    res = run_finetune(encoder=job.encoder, cfg=ft, data_root=Path(data_root),
                       train_sites=train_sites, test_sites=test_sites, cache_dir=Path(cache_dir))
    job.metrics, job.seconds = res.metrics, res.seconds
    return job


def pretraining_config(cfg: QualityConfig, *, seed: int, num_sites: int,
                       update_noise: float | None = None, clip: float = 1.0) -> dict[str, Any]:
    """The RunConfig (as a raw dict) every pretraining variant of this benchmark uses; with
    ``update_noise``, the federated run with update DP at that noise multiplier and ``clip``."""
    from shared.pretext.selection import parse_pretext_option

    updates = ({"updates": {"enabled": True, "clipping": "client", "clipping_norm": clip,
                            "noise_multiplier": update_noise}} if update_noise is not None else {})
    return {"seed": seed,
            "model": {"site_local_norm": cfg.site_local_norm},
            "data": {"spacing_mm": cfg.spacing_mm, "crop_size": cfg.pretrain_crop},
            "pretext": parse_pretext_option(cfg.pretext),
            "train": {"local_steps": cfg.local_steps},
            "federation": {"num_rounds": cfg.rounds, "min_nodes": num_sites,
                           "strategy": {"name": cfg.strategy}},
            "privacy": {"min_studies": 2, **updates}}


def median_update_norm(run_dir: Path) -> float:
    """The median of the sites' update norms over every round of a finished run (metrics.json,
    ``update-norm`` per site: what the server measured before aggregating)."""
    from server.metrics_log import METRICS_FILE

    path = run_dir / METRICS_FILE
    if not path.is_file():
        raise SystemExit(f"Expected the federated run's {path} to set the update-DP clipping norm "
                         "from, found none. Run the federated variant too (add federated to "
                         "--variants) or pass --update-dp-clip.")
    rounds = json.loads(path.read_text())["rounds"]
    norms = [site["update-norm"] for r in rounds for site in r["train"]["sites"].values()
             if isinstance(site.get("update-norm"), int | float)]
    if not norms:
        raise SystemExit(f"Expected update norms in {path}, found none (a run from before the "
                         "server measured them). Delete that run folder to pretrain it again, "
                         "or pass --update-dp-clip.")
    return float(statistics.median(norms))


def pretrain(cfg: QualityConfig, *, seed: int, data_root: Path, train_sites: list[str],
             work: Path) -> dict[str, Any]:
    """Pretrain the federated (Flower), centralized and local-only encoders of ``cfg.variants``."""
    from rich.console import Console

    from shared.config import RunConfig
    from shared.stats_schema import StatsPool
    from simulations.baselines import (
        exact_pool,
        iid_site_folders,
        pooled_site_folder,
        pretrain_alone,
        pretrain_cyclic,
    )
    from simulations.scenario import build_scenario
    from simulations.simulate import run_simulation

    run_raw = pretraining_config(cfg, seed=seed, num_sites=len(train_sites))
    out: dict[str, Any] = {"seconds": {}}

    def federate(variant: str, root: Path, *, update_noise: float | None = None,
                 clip: float = 1.0) -> Path:
        raw = (run_raw if update_noise is None else
               pretraining_config(cfg, seed=seed, num_sites=len(train_sites),
                                  update_noise=update_noise, clip=clip))
        scenario = build_scenario({**raw, "simulation": {"sites": len(train_sites),
                                                         "data_root": str(root)}},
                                  source="quality benchmark")
        t0 = time.perf_counter()
        fed = run_simulation(scenario, out_dir=work / f"{variant}-seed{seed}",
                             console=Console(quiet=True))
        out["seconds"][variant] = time.perf_counter() - t0
        out[variant] = str(fed.out_dir / "encoder.safetensors")
        if update_noise is not None:  # what the run spent, from its model card
            card = json.loads((fed.out_dir / "model_card.json").read_text())
            out.setdefault("update_privacy", {})[variant] = card["update_privacy"]
        return fed.out_dir

    if "federated" in cfg.variants:
        out["fed_run"] = str(federate("federated", data_root))
    for variant, noise in UPDATE_DP_VARIANTS.items():
        if variant in cfg.variants:
            clip = (cfg.update_dp_clip if cfg.update_dp_clip is not None
                    else median_update_norm(work / f"federated-seed{seed}"))
            federate(variant, data_root, update_noise=noise, clip=clip)
    if "federated_iid" in cfg.variants:
        federate("federated_iid", iid_site_folders(data_root, train_sites,
                                                   work / f"iid-seed{seed}" / "data", seed=seed))
    run_cfg = RunConfig.model_validate(run_raw)
    site_dirs = [data_root / s for s in train_sites]

    @functools.cache
    def sites_pool() -> StatsPool:  # centralized and cyclic use the same exact statistics
        return exact_pool(run_cfg, site_dirs, state_root=work / f"stats-seed{seed}")

    if "centralized" in cfg.variants:
        t0 = time.perf_counter()
        pool = sites_pool()
        pooled = pooled_site_folder(data_root, train_sites, work / f"pooled-seed{seed}" / "data")
        out["centralized"] = str(pretrain_alone(
            run_cfg, data_dir=pooled, rounds=cfg.rounds,
            steps_per_round=cfg.local_steps * len(train_sites), pool=pool,
            out_dir=work / f"centralized-seed{seed}"))
        out["seconds"]["centralized"] = time.perf_counter() - t0
    if "local_only" in cfg.variants:
        t0 = time.perf_counter()
        out["local_only"] = {s: str(pretrain_alone(
            run_cfg, data_dir=data_root / s, rounds=cfg.rounds, steps_per_round=cfg.local_steps,
            pool=None, out_dir=work / f"local-seed{seed}" / s)) for s in train_sites}
        out["seconds"]["local_only"] = time.perf_counter() - t0
    if "cyclic" in cfg.variants:
        t0 = time.perf_counter()
        out["cyclic"] = str(pretrain_cyclic(
            run_cfg, site_dirs=site_dirs, rounds=cfg.rounds, steps_per_round=cfg.local_steps,
            pool=sites_pool(), out_dir=work / f"cyclic-seed{seed}"))
        out["seconds"]["cyclic"] = time.perf_counter() - t0
    return out


#: The packages whose code a pretraining runs (this file is added).
CODE_PACKAGES = ("client", "server", "shared", "simulations")


@functools.cache
def code_version() -> str:
    """A sha256 of every Python source a pretraining runs (the packages above and this
    script), so a recorded encoder is never reused by other code; docs and results do not
    count, so writing results keeps the records of the same code reusable."""
    import hashlib

    root = Path(__file__).resolve().parent.parent
    files = sorted(p for pkg in CODE_PACKAGES for p in (root / pkg).rglob("*.py"))
    digest = hashlib.sha256()
    for path in [*files, Path(__file__).resolve()]:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def pretraining_key(cfg: QualityConfig, *, seed: int, data_root: Path,
                    train_sites: list[str]) -> dict[str, Any]:
    """Everything a seed's pretrained encoders depend on, the code version included
    (fine-tuning settings and which variants run are not in it)."""
    return {"code": code_version(),
            "run": pretraining_config(cfg, seed=seed, num_sites=len(train_sites)),
            "update_dp": {"clip": cfg.update_dp_clip, "noise": UPDATE_DP_VARIANTS},
            "data_root": str(data_root), "train_sites": train_sites,
            "phantom": [cfg.sites, cfg.subjects_per_site, cfg.spacing_mm]}


def _encoder_files(entry: str | dict[str, str]) -> list[Path]:
    return [Path(p) for p in (entry.values() if isinstance(entry, dict) else [entry])]


def finished_pretraining(cfg: QualityConfig, *, seed: int, data_root: Path, train_sites: list[str],
                         work: Path) -> dict[str, Any]:
    """The seed's pretrained encoders: reused from ``work`` when an earlier run finished them
    with the same pretraining settings (so fine-tuning controls and interrupted runs do not
    pretrain again), else pretrained now and recorded."""
    key = pretraining_key(cfg, seed=seed, data_root=data_root, train_sites=train_sites)
    record = work / f"pretraining-seed{seed}.json"
    wanted = [v for v in cfg.variants if v != "scratch"]
    done: dict[str, Any] = {"seconds": {}}
    if record.is_file():
        earlier = json.loads(record.read_text())
        earlier_key = {k: v for k, v in earlier.get("key", {}).items() if k != "variants"}
        if earlier_key == key:  # (records before per-variant reuse also listed the variants)
            done = {k: v for k, v in earlier.items() if k != "key"}
            done["seconds"] = dict(done.get("seconds", {}))
    reusable = [v for v in wanted if v in done and all(p.is_file() for p in _encoder_files(done[v]))]
    missing = [v for v in wanted if v not in reusable]
    if reusable:
        print(f"seed {seed}: reusing the pretrained {', '.join(reusable)} encoders recorded in "
              f"{record}", flush=True)
    if missing:
        new = pretrain(replace(cfg, variants=tuple(missing)), seed=seed, data_root=data_root,
                       train_sites=train_sites, work=work)
        done = {**done, **new, "seconds": {**done["seconds"], **new["seconds"]},
                "update_privacy": {**done.get("update_privacy", {}), **new.get("update_privacy", {})}}
        record.write_text(json.dumps({**done, "key": key}, indent=2))
    if not missing and reusable:
        done["reused_from"] = str(record)
    return done


def effective_dimensions_of(encoder: str | None, samples: list[dict[str, Any]], *, edge: int,
                            seed: int) -> tuple[float, int]:
    """How many directions the encoder's deepest features of held-out volumes spread along.

    The participation ratio (simulations/report/projection.py) of the deepest feature map
    of each test study's central ``edge``^3 crop, every voxel of it one sample; ``None``
    means the random initialisation fine-tuning from scratch starts from (seeded as there).
    Returns the effective dimensions and the feature width they are out of.
    """
    import numpy as np

    from shared.config import ModelConfig
    from shared.model import resolve_preset
    from shared.model.downstream import downstream_encoder
    from simulations.report.projection import effective_dimensions

    torch.manual_seed(seed)
    preset = resolve_preset(ModelConfig(), cuda_available=torch.cuda.is_available())  # as scratch
    net = downstream_encoder(encoder, in_channels=samples[0]["image"].shape[0], preset=preset).eval()
    feats = []
    with torch.no_grad():
        for s in samples:
            image = torch.as_tensor(s["image"]).float()
            corner = [max(0, (n - edge) // 2) for n in image.shape[1:]]
            crop = image[:, corner[0]:corner[0] + edge, corner[1]:corner[1] + edge,
                         corner[2]:corner[2] + edge]
            deepest = net.forward_features(crop[None])[-1][0]
            feats.append(deepest.flatten(1).T.numpy())
    features = np.concatenate(feats)
    return effective_dimensions(features), features.shape[1]


def representation_table(jobs: list[Job], cfg: QualityConfig, *, data_root: Path,
                         test_sites: list[str], cache_dir: Path) -> dict[str, dict[str, float]]:
    """Effective dimensions of every variant's encoder (mean and std over seeds, out of
    ``width`` feature channels)."""
    from client.finetune.data import labelled_samples
    from shared.config import DataConfig

    samples = labelled_samples(data_root, test_sites, data=DataConfig(spacing_mm=cfg.spacing_mm),
                               cache_dir=cache_dir)
    edge = 16 * max(1, min(min(s["image"].shape[1:]) for s in samples) // 32)
    out: dict[str, dict[str, float]] = {}
    for variant in cfg.variants:
        per_seed, widths = [], set()
        for seed in cfg.seeds:
            encoders = sorted({j.encoder or "" for j in jobs if j.variant == variant and j.seed == seed})
            if encoders:
                measured = [effective_dimensions_of(e or None, samples, edge=edge, seed=seed)
                            for e in encoders]
                per_seed.append(statistics.fmean(d for d, _ in measured))
                widths |= {w for _, w in measured}
        if per_seed:
            out[variant] = {"mean": statistics.fmean(per_seed),
                            "std": statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0,
                            "width": max(widths)}
    return out


def summarize(jobs: list[Job], cfg: QualityConfig) -> dict[str, dict[str, dict[str, float]]]:
    """Mean and std over seeds (per seed, the mean over its labelled subsets and, for
    local_only, its sites first)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for fraction in cfg.label_fractions:
        row: dict[str, dict[str, float]] = {}
        for variant in cfg.variants:
            entry: dict[str, float] = {}
            for task, key, name in (("segmentation", "dice_mean", "dice"),
                                    ("classification", "acc", "acc"),
                                    ("classification", "auc", "auc"),
                                    ("classification", "balanced_acc", "balanced_acc"),
                                    ("segmentation", "dice_wt", "dice_wt"),
                                    ("segmentation", "dice_tc", "dice_tc"),
                                    ("segmentation", "dice_et", "dice_et"),
                                    ("segmentation", "dice_present_mean", "dice_present"),
                                    ("segmentation", "false_positive_wt", "false_positive_wt"),
                                    ("segmentation", "false_positive_et", "false_positive_et")):
                per_seed = []
                for seed in cfg.seeds:
                    vals = [j.metrics[key] for j in jobs if j.variant == variant and j.task == task
                            and j.fraction == fraction and j.seed == seed and key in j.metrics]
                    vals = [v for v in vals if v == v]  # drop NaN (e.g. AUC with one class)
                    if vals:
                        per_seed.append(statistics.fmean(vals))
                if per_seed:
                    entry[f"{name}_mean"] = statistics.fmean(per_seed)
                    entry[f"{name}_std"] = statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0
            row[variant] = entry
        out[str(fraction)] = row
    return out


def markdown(results: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = ["| labels | variant | Dice mean (WT/TC/ET) | accuracy | balanced acc | AUC |",
             "|---|---|---|---|---|---|"]

    def fmt(e: dict[str, float], k: str) -> str:
        return f"{e[k + '_mean']:.3f} ± {e[k + '_std']:.3f}" if k + "_mean" in e else "n/a"

    for fraction, row in results.items():
        for variant, e in row.items():
            regions = "/".join(f"{e.get(f'dice_{r}_mean', float('nan')):.2f}" for r in ("wt", "tc", "et"))
            lines.append(f"| {float(fraction):.0%} | {variant} | {fmt(e, 'dice')} ({regions}) | "
                         f"{fmt(e, 'acc')} | {fmt(e, 'balanced_acc')} | {fmt(e, 'auc')} |")
    return "\n".join(lines)


def split_markdown(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """The BraTS Dice split: overlap on the test cases that have each region, and how often
    a region was predicted in a case without it (which BraTS scores 0 for that case)."""
    lines = ["| labels | variant | Dice on cases with the region | tumour predicted in the "
             "tumour-free case | ET predicted without ET |", "|---|---|---|---|---|"]

    def fmt(e: dict[str, float], k: str, pct: bool = False) -> str:
        if k + "_mean" not in e:
            return "n/a"
        m, sd = e[k + "_mean"], e[k + "_std"]
        return f"{m:.0%} ± {sd:.0%}" if pct else f"{m:.3f} ± {sd:.3f}"

    for fraction, row in results.items():
        for variant, e in row.items():
            lines.append(f"| {float(fraction):.0%} | {variant} | {fmt(e, 'dice_present')} | "
                         f"{fmt(e, 'false_positive_wt', True)} | {fmt(e, 'false_positive_et', True)} |")
    return "\n".join(lines)


def dims_markdown(dims: dict[str, dict[str, float]]) -> str:
    lines = ["| variant | effective dimensions |", "|---|---|"]
    lines += [f"| {v} | {e['mean']:.1f} ± {e['std']:.1f} of {e['width']:.0f} |"
              for v, e in dims.items()]
    return "\n".join(lines)


def paired_points(jobs: list[Job], cfg: QualityConfig, *, fraction: float,
                  reference: str = "scratch") -> dict[str, list[float]]:
    """Per variant, its segmentation Dice minus ``reference``'s on the same (seed, labelled
    subset), in points (local_only: the mean over its sites first)."""
    def dice(variant: str, seed: int, subset: int) -> float | None:
        vals = [j.metrics["dice_mean"] for j in jobs if j.variant == variant and j.seed == seed
                and j.subset == subset and j.task == "segmentation" and j.fraction == fraction
                and "dice_mean" in j.metrics]
        return statistics.fmean(vals) if vals else None

    out: dict[str, list[float]] = {}
    for variant in cfg.variants:
        if variant == reference:
            continue
        diffs = []
        for seed in cfg.seeds:
            for subset in range(cfg.label_subsets):
                v, s = dice(variant, seed, subset), dice(reference, seed, subset)
                if v is not None and s is not None:
                    diffs.append(100 * (v - s))
        out[variant] = diffs
    return out


def paired_markdown(paired: dict[str, list[float]], *, reference: str = "scratch") -> str:
    lines = [f"| variant | Dice - {reference}, paired (points, mean ± sd) | standard error | "
             f"pairs | pairs above {reference} |", "|---|---|---|---|---|"]
    for variant, d in paired.items():
        if d:
            sd = statistics.stdev(d) if len(d) > 1 else 0.0
            lines.append(f"| {variant} | {statistics.fmean(d):+.1f} ± {sd:.1f} | "
                         f"{standard_error(d):.1f} | {len(d)} | {sum(x > 0 for x in d)} |")
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
            "the level of sites, over all rounds of the run; the clipping norm is the median "
            "update norm of the same seed's federated run without DP unless --update-dp-clip "
            "set it):\n\n" + "\n".join(rows) + "\n")


def bar_chart(results: dict[str, dict[str, dict[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(metric, label) for metric, label in (("dice", "Dice mean (test site)"),
                                                    ("acc", "accuracy (test site)"))
              if any(f"{metric}_mean" in e for row in results.values() for e in row.values())]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.4), dpi=100,
                             squeeze=False)
    variants = [v for v in (*VARIANTS, *OPTIONAL_VARIANTS) if any(v in row for row in results.values())]
    width = 0.8 / len(variants)
    for ax, (metric, label) in zip(axes[0], panels, strict=True):
        for i, variant in enumerate(variants):
            xs, ys, es = [], [], []
            for k, fraction in enumerate(results):
                e = results[fraction].get(variant, {})
                if f"{metric}_mean" in e:
                    xs.append(k + (i - (len(variants) - 1) / 2) * width)
                    ys.append(e[f"{metric}_mean"])
                    es.append(e[f"{metric}_std"])
            ax.bar(xs, ys, width, yerr=es, label=variant, capsize=2)
        ax.set_xticks(range(len(results)), [f"{float(f):.0%} labels" for f in results])
        ax.set_ylabel(label)
        ax.set_ylim(0, 1)
    axes[0][0].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def machine_line() -> str:
    """The machine a benchmark ran on, in one line."""
    gpu = f"CUDA {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no GPU"
    return (f"{platform.platform()}, {platform.processor() or 'cpu'}, {mp.cpu_count()} cores, "
            f"torch {torch.__version__}, {gpu}")


def phantom_sites(cfg: QualityConfig) -> tuple[Path, list[str], list[str]]:
    """The benchmark phantom (generated once, cached): data root, training and test sites."""
    from simulations.phantom import PhantomConfig, generate_phantom
    from simulations.simulate import cache_root

    data_root = cache_root() / f"quality-{cfg.sites}x{cfg.subjects_per_site}-{cfg.spacing_mm:g}mm"
    manifest = generate_phantom(PhantomConfig(sites=cfg.sites, subjects_per_site=cfg.subjects_per_site,
                                              spacing_mm=cfg.spacing_mm, seed=0),
                                data_root, workers=2, progress=False)
    sites = [s.name for s in manifest.sites]
    return data_root, sites[:-1], sites[-1:]


def run_quality(cfg: QualityConfig, *, work: Path) -> dict[str, Any]:
    """Pretrain every variant for every seed, fine-tune them all; the results document."""
    started = time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    data_root, train_sites, test_sites = phantom_sites(cfg)
    print(f"phantom: {data_root}; pretrain/fine-tune on {train_sites}, test on {test_sites}; "
          f"pretext {cfg.pretext}, strategy {cfg.strategy}", flush=True)
    jobs: list[Job] = []
    pretraining: dict[int, dict[str, Any]] = {}
    for seed in cfg.seeds:
        pretraining[seed] = enc = finished_pretraining(cfg, seed=seed, data_root=data_root,
                                                       train_sites=train_sites, work=work)
        print(f"seed {seed}: pretrained in {enc['seconds']}", flush=True)
        jobs += seed_jobs(cfg, seed=seed, encoders=enc)
    t_ft = time.perf_counter()
    args_common = (json.dumps(asdict(cfg)), str(data_root), train_sites, test_sites,
                   str(work / "finetune-cache"))
    with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=mp.get_context("spawn"),
                             initializer=_worker_init) as pool:
        done = list(pool.map(_run_job, jobs, *([a] * len(jobs) for a in args_common)))
    finetune_seconds = time.perf_counter() - t_ft
    results = summarize(done, cfg)
    paired = paired_points(done, cfg, fraction=min(cfg.label_fractions))
    dims = representation_table(done, cfg, data_root=data_root, test_sites=test_sites,
                                cache_dir=work / "finetune-cache")
    return {
        "config": asdict(cfg),
        "machine": machine_line(),
        "results": results,
        "goals_at_low_label_fraction": goals(results, str(min(cfg.label_fractions)), paired),
        "effective_dimensions": dims,
        "paired_dice_points_at_low_label_fraction": paired,
        "paired_dice_points_vs_federated_at_low_label_fraction": (paired_points(
            done, cfg, fraction=min(cfg.label_fractions), reference="federated")
            if "federated" in cfg.variants else {}),
        "seconds": {"total": time.perf_counter() - started, "finetune": finetune_seconds,
                    "pretrain": {str(k): v["seconds"] for k, v in pretraining.items()}},
        "jobs": [asdict(j) for j in done],
        "data_root": str(data_root), "train_sites": train_sites,
        "fed_run": pretraining[cfg.seeds[0]].get("fed_run"),
        "update_privacy": {str(seed): p["update_privacy"] for seed, p in pretraining.items()
                           if p.get("update_privacy")},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="minutes-long smoke version")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--work-dir", type=Path, default=Path("runs") / "quality")
    parser.add_argument("--name", default=None, help="results file stem (default quality)")
    for knob in ("rounds", "local_steps", "finetune_steps", "classify_steps", "label_subsets"):
        parser.add_argument(f"--{knob.replace('_', '-')}", type=int, default=None,
                            help=f"override {knob} (default {getattr(QualityConfig(), knob)})")
    parser.add_argument("--pretext", default=None,
                        help=f"pretext tasks, 'a,b:0.5' (default {QualityConfig().pretext})")
    parser.add_argument("--strategy", default=None, help="aggregation strategy (default fedavg)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--variants", default=None,
                        help=f"comma-separated variants (default {','.join(VARIANTS)}; controls: "
                        f"{','.join(CONTROL_VARIANTS)}; update DP: {','.join(UPDATE_DP_VARIANTS)})")
    parser.add_argument("--update-dp-clip", type=float, default=None,
                        help="clipping norm of the update-DP variants (default: the median update norm of "
                        "the same seed's federated run without DP)")
    parser.add_argument("--tasks", default=None,
                        help="comma-separated fine-tuning tasks (default segmentation,classification)")
    parser.add_argument("--label-fractions", default=None,
                        help="comma-separated label fractions (default 0.1,1.0)")
    parser.add_argument("--site-local-norm", choices=("true", "false"), default=None,
                        help="keep normalization affine on the sites (FedBN) during pretraining")
    parser.add_argument("--linear-probe", action="store_const", const=True, default=None,
                        help="fine-tuning control: freeze every encoder, train the heads only")
    parser.add_argument("--encoder-lr-scale", type=float, default=None,
                        help="fine-tuning control: encoder learning rate x this (default 1)")
    parser.add_argument("--augment-intensity", action="store_const", const=True, default=None,
                        help="fine-tuning control: per-modality intensity augmentation")
    args = parser.parse_args(argv)
    cfg = QualityConfig.quick() if args.quick else QualityConfig()
    overrides: dict[str, Any] = {k: getattr(args, k) for k in (
        "rounds", "local_steps", "finetune_steps", "classify_steps", "label_subsets", "pretext",
        "strategy", "linear_probe", "encoder_lr_scale", "augment_intensity", "update_dp_clip")
        if getattr(args, k) is not None}
    listed: tuple[tuple[str, Any, Any, str], ...] = (  # (option, parse, valid?, what is valid)
        ("seeds", int, lambda x: True, ""),
        ("variants", str, lambda x: x in (*VARIANTS, *OPTIONAL_VARIANTS),
         f"some of {', '.join((*VARIANTS, *OPTIONAL_VARIANTS))}"),
        ("tasks", str, lambda x: x in ("segmentation", "classification"),
         "segmentation and/or classification"),
        ("label_fractions", float, lambda x: 0 < x <= 1, "fractions in (0, 1]"))
    for option, parse, valid, expected in listed:
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
    if (cfg.update_dp_clip is None and "federated" not in cfg.variants
            and any(v in cfg.variants for v in UPDATE_DP_VARIANTS)):
        parser.error("--variants: the update-DP variants take their clipping norm from the "
                     "federated run without DP, which is not among them; add federated or "
                     "pass --update-dp-clip")
    name = args.name or ("quality_quick" if args.quick else "quality")
    doc = run_quality(cfg, work=args.work_dir.resolve())
    doc["command"] = " ".join(["python benchmarks/quality.py",
                               *(argv if argv is not None else sys.argv[1:])])
    results, low = doc["results"], str(min(cfg.label_fractions))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{name}.json").write_text(json.dumps(doc, indent=2))
    table = markdown(results)
    dims = dims_markdown(doc["effective_dimensions"])
    paired = paired_markdown(doc["paired_dice_points_at_low_label_fraction"])
    if vs_fed := doc["paired_dice_points_vs_federated_at_low_label_fraction"]:
        paired += "\n\n" + paired_markdown(vs_fed, reference="federated")
    (args.out_dir / f"{name}.md").write_text(
        f"# Quality benchmark\n\n`{doc['command']}` on {doc['machine']}, "
        f"{doc['seconds']['total'] / 60:.1f} min.\n\n{table}\n\nGoals at "
        f"{float(low):.0%} labels: {json.dumps(doc['goals_at_low_label_fraction'])}\n\n"
        f"Paired differences at {float(low):.0%} labels, one per seed x labelled subset "
        f"(mean ± sd):\n\n{paired}\n\n"
        f"The BraTS Dice above split (a test case without a region scores 0 or 1 on whether "
        f"anything was predicted there):\n\n{split_markdown(results)}\n\n"
        f"Effective dimensions of the encoders' deepest features on the test site's studies "
        f"(participation ratio; scratch = the random initialisation):\n\n{dims}\n"
        + update_privacy_markdown(doc["update_privacy"]))
    bar_chart(results, args.out_dir / f"{name}.png")
    if doc["fed_run"]:
        from simulations.report import write_run_report

        report = write_run_report(Path(doc["fed_run"]), data_root=Path(doc["data_root"]),
                                  site_dirs=doc["train_sites"], downstream=results,
                                  title=f"Quality benchmark: federated run, seed {cfg.seeds[0]}")
        print(f"report: {report}")
    print(table)
    print(f"\n{paired}\n\n{dims}")
    print(f"\ngoals at {float(low):.0%} labels: {json.dumps(doc['goals_at_low_label_fraction'])}")
    print(f"saved {args.out_dir / (name + '.json')} in {doc['seconds']['total'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
