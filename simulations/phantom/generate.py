"""Generate the phantom dataset on disk in the BraTS 2021 layout, one folder per site, cached."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import re
import shutil
import sys
import threading
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Final

import nibabel as nib
import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from simulations.phantom.config import PhantomConfig
from simulations.phantom.manifest import (
    MANIFEST_NAME,
    PhantomManifest,
    PhantomSiteRecord,
    PhantomSubjectRecord,
    compute_cache_key,
    read_manifest,
    site_name,
    subject_file,
    subject_id,
)
from simulations.phantom.profiles import ScannerProfileConfig, load_profiles
from simulations.phantom.signal import CONTRASTS
from simulations.phantom.subject import simulate_subject
from simulations.phantom.template import load_template
from simulations.phantom.tissues import load_tissue_table
from simulations.phantom.tumour import LABEL_CORE, LABEL_EDEMA, LABEL_ENHANCING, tumour_centre

__all__ = ["PhantomConfig", "PhantomOutputError", "generate_phantom"]

#: Hidden file that marks a folder as a phantom (written before any subject), so that an
#: interrupted run can be regenerated while a folder of someone else's data is refused.
MARKER_NAME: Final = ".fedmm-phantom"
_SITE_DIR = re.compile(r"^site-\d+$")


class PhantomOutputError(ValueError):
    """The output folder cannot take a phantom (it holds other data, or is a file)."""


@dataclass(frozen=True)
class _SubjectJob:
    """Everything a worker process needs to simulate and write one subject."""

    root: Path
    site_index: int
    site: str
    subject_index: int  # within the site: seeds the subject
    subject: str  # global BraTS id: names the files
    profile: ScannerProfileConfig
    seed: int
    spacing_mm: float
    tumour_fraction: float


def _write_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    """Save atomically: a hidden temporary name, then a rename, so a crash never leaves a
    half-written file under the final name (which the cache check would accept)."""
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    tmp = path.with_name(f".{path.name.removesuffix('.nii.gz')}.tmp{os.getpid()}.nii.gz")
    nib.save(img, tmp)
    os.replace(tmp, path)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _run_job(job: _SubjectJob) -> PhantomSubjectRecord:
    """Simulate one subject and write its five BraTS files (runs in a worker process)."""
    template = load_template(job.spacing_mm)
    vol = simulate_subject(
        template=template,
        profile=job.profile,
        table=load_tissue_table(),
        seed=job.seed,
        site=job.site_index,
        subject=job.subject_index,
        tumour_fraction=job.tumour_fraction,
    )
    folder = job.root / job.site / job.subject
    folder.mkdir(parents=True, exist_ok=True)
    for c, name in enumerate(CONTRASTS):
        _write_nifti(subject_file(job.root, job.site, job.subject, name), vol.images[c], template.affine)
    _write_nifti(subject_file(job.root, job.site, job.subject, "seg"), vol.seg, template.affine)
    counts = np.bincount(vol.seg.ravel(), minlength=LABEL_ENHANCING + 1)
    return PhantomSubjectRecord(
        id=job.subject,
        grade=vol.grade,
        tumour_voxels=int((vol.seg > 0).sum()),
        label_voxels={str(k): int(counts[k]) for k in (LABEL_CORE, LABEL_EDEMA, LABEL_ENHANCING)},
        tumour_centre_voxel=tumour_centre(vol.seg),
        brain_voxels=int(vol.brain_mask.sum()),
    )


def _warm_worker(spacing_mm: float) -> None:
    """Load the template once per worker rather than once per subject."""
    load_template(spacing_mm)
    load_tissue_table()


def _pool_context() -> BaseContext:
    # Forking is fastest (workers inherit the loaded template) but unsafe once threads exist
    # and on macOS; spawn is the safe fallback.
    if sys.platform.startswith("linux") and threading.active_count() == 1:
        return mp.get_context("fork")
    return mp.get_context("spawn")


def _is_complete(manifest: PhantomManifest, root: Path) -> bool:
    return all(path.is_file() for path in manifest.subject_files(root))


def _check_out_dir(out_dir: Path, key: str) -> tuple[PhantomManifest | None, bool]:
    """Return (a reusable manifest, whether the folder already holds a phantom).

    Raises:
        PhantomOutputError: when `out_dir` is a file, or a non-empty folder that is not a
            phantom (no marker, no manifest): we never overwrite other data.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise PhantomOutputError(
            f"expected a folder for the phantom at {out_dir}, got a file; fix: choose another --out path"
        )
    manifest = read_manifest(out_dir)
    if manifest is not None and manifest.cache_key == key and _is_complete(manifest, out_dir):
        return manifest, True
    is_phantom = manifest is not None or (out_dir / MARKER_NAME).is_file()
    if out_dir.is_dir() and not is_phantom and any(out_dir.iterdir()):
        found = sorted(p.name for p in out_dir.iterdir())[:5]
        raise PhantomOutputError(
            f"expected an empty folder or an earlier phantom at {out_dir}, got other files "
            f"({', '.join(found)}, ...) and no {MANIFEST_NAME} or {MARKER_NAME}; fix: choose "
            "an empty or new --out folder (the phantom never overwrites other data)"
        )
    return None, is_phantom


def _clear_old_phantom(out_dir: Path) -> None:
    """Remove what an earlier phantom wrote (manifest first, so it can never match again)."""
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)
    (out_dir / "preview.png").unlink(missing_ok=True)
    for child in out_dir.iterdir():
        if child.is_dir() and _SITE_DIR.match(child.name):
            shutil.rmtree(child)


def _jobs(cfg: PhantomConfig, out_dir: Path, profiles: list[ScannerProfileConfig]) -> list[_SubjectJob]:
    jobs = []
    for s in range(cfg.sites):
        for j in range(cfg.subjects_per_site):
            jobs.append(
                _SubjectJob(
                    root=out_dir,
                    site_index=s,
                    site=site_name(s),
                    subject_index=j,
                    subject=subject_id(s * cfg.subjects_per_site + j),
                    profile=profiles[s % len(profiles)],
                    seed=cfg.seed,
                    spacing_mm=cfg.spacing_mm,
                    tumour_fraction=cfg.tumour_fraction,
                )
            )
    return jobs


def _progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]phantom[/bold] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def _run_all(
    jobs: list[_SubjectJob], *, workers: int, progress: bool, spacing_mm: float
) -> list[PhantomSubjectRecord]:
    console = Console(stderr=True)
    bar = _progress_bar(console)
    records: list[PhantomSubjectRecord | None] = [None] * len(jobs)
    task = bar.add_task(f"{len(jobs)} subjects, {workers} worker(s)", total=len(jobs))
    if workers == 1:
        # One worker: run in this process, no pool start-up (also what tests time).
        with bar if progress else contextlib.nullcontext():
            for i, job in enumerate(jobs):
                records[i] = _run_job(job)
                bar.advance(task)
    else:
        pool = ProcessPoolExecutor(
            max_workers=min(workers, len(jobs)),
            mp_context=_pool_context(),
            initializer=_warm_worker,
            initargs=(spacing_mm,),
        )
        try:
            # Submit everything before the progress thread starts, so forked workers are
            # created while this process has a single thread.
            futures: dict[Future[PhantomSubjectRecord], int] = {
                pool.submit(_run_job, job): i for i, job in enumerate(jobs)
            }
            with bar if progress else contextlib.nullcontext():
                for fut in as_completed(futures):
                    records[futures[fut]] = fut.result()
                    bar.advance(task)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return [r for r in records if r is not None]


def generate_phantom(
    cfg: PhantomConfig, out_dir: Path, *, workers: int = 2, progress: bool = True
) -> PhantomManifest:
    """Generate (or reuse) a multi-site brain-tumour phantom in the BraTS 2021 layout.

    Writes `<out_dir>/site-<k>/BraTS2021_<nnnnn>/BraTS2021_<nnnnn>_{t1,t1ce,t2,flair,seg}
    .nii.gz` (float32 images, uint8 labels, RAS affine with the spacing) and, last,
    `<out_dir>/manifest.json`. Subject ids run consecutively over all sites; site k is
    scanned with profile `k % len(profiles)`. Output depends only on the config, the
    profiles and the generator version, not on `workers`.

    If `manifest.json` has the same cache key and every file is present, nothing is
    recomputed. An earlier phantom with another key is replaced; a non-empty folder that is
    not a phantom is refused.

    Args:
        cfg: what to generate.
        out_dir: output folder (created if missing).
        workers: worker processes (1 runs in this process).
        progress: show a progress bar on stderr.

    Returns:
        The manifest of the phantom on disk.

    Raises:
        ValueError: for `workers < 1` or a bad profiles file (naming the file).
        PhantomOutputError: when `out_dir` holds data that is not a phantom.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"expected workers >= 1, got {workers!r}; fix: pass e.g. workers=2")
    out_dir = Path(out_dir)
    profiles = load_profiles(cfg.profiles_file)
    table = load_tissue_table()
    key = compute_cache_key(cfg, profiles, table)
    cached, is_phantom = _check_out_dir(out_dir, key)
    if cached is not None:
        if progress:
            Console(stderr=True).print(f"phantom in {out_dir} is up to date (key {key[:12]}); reusing it")
        return cached

    out_dir.mkdir(parents=True, exist_ok=True)
    if is_phantom:
        _clear_old_phantom(out_dir)
    _write_text(out_dir / MARKER_NAME, f"{key}\n")
    template = load_template(cfg.spacing_mm)
    jobs = _jobs(cfg, out_dir, profiles)
    records = _run_all(jobs, workers=workers, progress=progress, spacing_mm=cfg.spacing_mm)

    sites = []
    for s in range(cfg.sites):
        chunk = records[s * cfg.subjects_per_site : (s + 1) * cfg.subjects_per_site]
        sites.append(
            PhantomSiteRecord(name=site_name(s), profile=profiles[s % len(profiles)], subjects=chunk)
        )
    manifest = PhantomManifest(
        cache_key=key,
        config=cfg,
        shape=template.shape,
        spacing_mm=cfg.spacing_mm,
        affine=template.affine.tolist(),
        sites=sites,
    )
    _write_text(out_dir / MANIFEST_NAME, manifest.model_dump_json(indent=2) + "\n")
    return manifest
