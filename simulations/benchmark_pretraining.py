"""The quality benchmark's pretraining: every variant's encoders for one seed, recorded.

Variants (docs/benchmark-protocol.md): ``federated`` (fedmm through Flower's simulation
engine on the federation's sites), ``centralized`` (the same pretraining on their studies
pooled), ``local_only/<site>`` (one site alone with the compute it would spend in the
federation), and on request the controls ``federated_iid``, ``cyclic`` and the update-DP
variants ``federated_dp`` / ``federated_dp_weak``, and ``federated_bf16`` (the federated run
with its sites' replies sent as bfloat16: ``federation.transfer_dtype``).

A seed's encoders are recorded in ``<work>/pretraining-seed<N>.json`` with a key of
everything they depend on (the code version: a sha256 of every Python source of the
packages a pretraining runs, the run settings, the phantom and its split), and reused
only while that key matches, so an interrupted benchmark resumes, the test role reuses the
validation role's federation, and an encoder pretrained by other code is never reused.
"""

from __future__ import annotations

import functools
import hashlib
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The cost of update DP ([privacy.updates]): the federated variant with Flower's client-side
#: fixed clipping (median_update_norm, or a given clip) and these noise multipliers.
UPDATE_DP_VARIANTS = {"federated_dp_weak": 0.1, "federated_dp": 1.0}
#: The cost of 16-bit transfer: the federated variant with this federation.transfer_dtype.
TRANSFER_VARIANTS = {"federated_bf16": "bfloat16"}
FEDERATION_VARIANTS = ("federated", "centralized", "federated_iid", "cyclic", *UPDATE_DP_VARIANTS,
                       *TRANSFER_VARIANTS)
#: The pretext tasks whose views AdaDN augments (their config has an ``adadn`` table).
ADADN_TASKS = ("cross_modal_contrastive",)
#: The packages whose code a pretraining runs.
CODE_PACKAGES = ("client", "server", "shared", "simulations")


@dataclass(frozen=True)
class PretrainSettings:
    """What a seed's pretraining depends on besides the seed and the data."""

    rounds: int
    local_steps: int
    crop: int
    spacing_mm: float
    pretext: str
    strategy: str = "fedavg"
    site_local_norm: bool = True
    update_dp_clip: float | None = None   # None: the median update norm of the federated run
    adadn_target: str | None = None       # None: the AdaDN tasks' own default target
    adadn_interpolate: bool = False       # blend source and target statistics, l ~ U(0, 1)
    adadn_matching: str | None = None     # None: the AdaDN tasks' own default (moments)

    def adadn(self) -> dict[str, Any]:
        """The AdaDN settings these override (empty: every AdaDN task keeps its defaults)."""
        return {**({"target": self.adadn_target} if self.adadn_target is not None else {}),
                **({"interpolate": True} if self.adadn_interpolate else {}),
                **({"matching": self.adadn_matching} if self.adadn_matching is not None else {})}


@functools.cache
def code_version() -> str:
    """A sha256 of every Python source of the packages a pretraining runs."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(p for pkg in CODE_PACKAGES for p in (root / pkg).rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def adadn_tasks(pretext: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries of a parsed ``--pretext`` list (``parse_pretext_option``) whose views
    AdaDN augments."""
    return [t for t in pretext if t["name"] in ADADN_TASKS]


def pretraining_config(s: PretrainSettings, *, seed: int, num_sites: int,
                       update_noise: float | None = None, clip: float = 1.0) -> dict[str, Any]:
    """The RunConfig (as a raw dict) of every pretraining variant; with ``update_noise``, the
    federated run with update DP at that noise multiplier and ``clip``."""
    from shared.pretext_option import parse_pretext_option

    pretext = parse_pretext_option(s.pretext)
    if adadn := s.adadn():
        tasks = adadn_tasks(pretext)
        if not tasks:
            raise ValueError(f"adadn settings {sorted(adadn)}: expected a pretext with an AdaDN "
                             f"task ({', '.join(ADADN_TASKS)}), got {s.pretext!r}")
        for task in tasks:
            task["adadn"] = dict(adadn)
    updates = ({"updates": {"enabled": True, "clipping": "client", "clipping_norm": clip,
                            "noise_multiplier": update_noise}} if update_noise is not None else {})
    return {"seed": seed,
            "model": {"site_local_norm": s.site_local_norm},
            "data": {"spacing_mm": s.spacing_mm, "crop_size": s.crop},
            "pretext": pretext,
            "train": {"local_steps": s.local_steps},
            "federation": {"num_rounds": s.rounds, "min_nodes": num_sites,
                           "strategy": {"name": s.strategy}},
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


def pretrain(s: PretrainSettings, wanted: list[str], *, seed: int, federation_root: Path,
             federation: list[str], alone: dict[str, Path], work: Path) -> dict[str, Any]:
    """Pretrain the ``wanted`` encoders: names in FEDERATION_VARIANTS, or ``local_only/<site>``
    for a site of ``alone`` (site -> its data folder). Returns ``{"encoders": {name: path},
    "seconds": {name: s}, ...}``."""
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

    n = len(federation)
    run_raw = pretraining_config(s, seed=seed, num_sites=n)
    out: dict[str, Any] = {"encoders": {}, "seconds": {}}

    def timed(name: str, make: Any) -> None:
        t0 = time.perf_counter()
        out["encoders"][name] = str(make())
        out["seconds"][name] = time.perf_counter() - t0

    def federate(name: str, root: Path, raw: dict[str, Any]) -> Path:
        scenario = build_scenario({**raw, "simulation": {"sites": n, "data_root": str(root)}},
                                  source="quality benchmark")
        fed = run_simulation(scenario, out_dir=work / f"{name}-seed{seed}", console=Console(quiet=True))
        if name in UPDATE_DP_VARIANTS:  # what it spent, from its model card
            card = json.loads((fed.out_dir / "model_card.json").read_text())
            out.setdefault("update_privacy", {})[name] = card["update_privacy"]
        return fed.out_dir / "encoder.safetensors"

    if "federated" in wanted:
        timed("federated", lambda: federate("federated", federation_root, run_raw))
        out["fed_run"] = str(work / f"federated-seed{seed}")
    for name, noise in UPDATE_DP_VARIANTS.items():
        if name in wanted:
            clip = (s.update_dp_clip if s.update_dp_clip is not None
                    else median_update_norm(work / f"federated-seed{seed}"))
            raw = pretraining_config(s, seed=seed, num_sites=n, update_noise=noise, clip=clip)
            timed(name, lambda raw=raw, name=name: federate(name, federation_root, raw))
    for name, dtype in TRANSFER_VARIANTS.items():
        if name in wanted:
            raw = {**run_raw, "federation": {**run_raw["federation"], "transfer_dtype": dtype}}
            timed(name, lambda raw=raw, name=name: federate(name, federation_root, raw))
    if "federated_iid" in wanted:
        timed("federated_iid", lambda: federate("federated_iid", iid_site_folders(
            federation_root, federation, work / f"iid-seed{seed}" / "data", seed=seed), run_raw))
    run_cfg = RunConfig.model_validate(run_raw)
    site_dirs = [federation_root / site for site in federation]

    @functools.cache
    def sites_pool() -> StatsPool:  # centralized and cyclic use the same exact statistics
        return exact_pool(run_cfg, site_dirs, state_root=work / f"stats-seed{seed}")

    if "centralized" in wanted:
        timed("centralized", lambda: pretrain_alone(
            run_cfg, data_dir=pooled_site_folder(federation_root, federation,
                                                 work / f"pooled-seed{seed}" / "data"),
            rounds=s.rounds, steps_per_round=s.local_steps * n, pool=sites_pool(),
            out_dir=work / f"centralized-seed{seed}"))
    if "cyclic" in wanted:
        timed("cyclic", lambda: pretrain_cyclic(
            run_cfg, site_dirs=site_dirs, rounds=s.rounds, steps_per_round=s.local_steps,
            pool=sites_pool(), out_dir=work / f"cyclic-seed{seed}"))
    for name in wanted:
        if name.startswith("local_only/"):
            site = name.split("/", 1)[1]
            timed(name, lambda site=site: pretrain_alone(
                run_cfg, data_dir=alone[site], rounds=s.rounds, steps_per_round=s.local_steps,
                pool=None, out_dir=work / f"local-seed{seed}" / site))
    return out


def finished_pretraining(s: PretrainSettings, wanted: list[str], *, seed: int, data_key: Any,
                         federation_root: Path, federation: list[str], alone: dict[str, Path],
                         work: Path) -> dict[str, Any]:
    """The seed's ``wanted`` encoders: reused from ``work`` where an earlier run recorded them
    under the same key (code version, settings, ``data_key``), else pretrained now and
    recorded. Returns ``{"encoders", "seconds", "reused", ...}``."""
    key = {"code": code_version(), "run": pretraining_config(s, seed=seed, num_sites=len(federation)),
           "update_dp": {"clip": s.update_dp_clip, "noise": UPDATE_DP_VARIANTS}, "data": data_key}
    record = work / f"pretraining-seed{seed}.json"
    done: dict[str, Any] = {"encoders": {}, "seconds": {}}
    if record.is_file():
        earlier = json.loads(record.read_text())
        if earlier.get("key") == key:
            done = {k: v for k, v in earlier.items() if k != "key"}
    reused = [v for v in wanted if v in done["encoders"] and Path(done["encoders"][v]).is_file()]
    missing = [v for v in wanted if v not in reused]
    if reused:
        print(f"seed {seed}: reusing the pretrained {', '.join(reused)} encoders recorded in "
              f"{record}", flush=True)
    if missing:
        new = pretrain(s, missing, seed=seed, federation_root=federation_root,
                       federation=federation, alone=alone, work=work)
        done = {**done, **{k: v for k, v in new.items() if k not in ("encoders", "seconds")},
                "encoders": {**done["encoders"], **new["encoders"]},
                "seconds": {**done["seconds"], **new["seconds"]},
                "update_privacy": {**done.get("update_privacy", {}), **new.get("update_privacy", {})}}
        work.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({**done, "key": key}, indent=2))
    return {**done, "reused": reused}
