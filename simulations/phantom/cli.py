"""`fedmm phantom`: generate the built-in multi-site brain phantom (the integrator registers it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from simulations.phantom.config import PhantomConfig
from simulations.phantom.generate import PhantomOutputError, generate_phantom
from simulations.phantom.manifest import MANIFEST_NAME
from simulations.phantom.preview import write_preview
from simulations.phantom.profiles import load_profiles

_OPTION_NAMES = {
    "sites": "--sites",
    "subjects_per_site": "--subjects-per-site",
    "seed": "--seed",
    "spacing_mm": "--spacing-mm",
    "tumour_fraction": "--tumour-fraction",
    "profiles_file": "--profiles",
}


def _config_error(exc: ValidationError) -> typer.BadParameter:
    """Name the offending command-line option(s) rather than pydantic's field names."""
    parts = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        parts.append(f"{_OPTION_NAMES.get(field, field or 'options')}: {err['msg']}")
    return typer.BadParameter("; ".join(parts))


def phantom_command(
    sites: Annotated[
        int, typer.Option("--sites", min=1, help="Number of simulated hospitals (site folders).")
    ] = 4,
    subjects_per_site: Annotated[
        int, typer.Option("--subjects-per-site", min=1, help="Subjects generated in each site.")
    ] = 12,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Output folder: <out>/site-<k>/BraTS2021_<nnnnn>/... plus manifest.json. "
            "Must be empty, new, or an earlier phantom.",
        ),
    ] = Path("runs/phantom"),
    seed: Annotated[
        int, typer.Option("--seed", min=0, help="Dataset seed; the same seed gives the same data.")
    ] = 0,
    spacing_mm: Annotated[
        float,
        typer.Option(
            "--spacing-mm",
            help="Isotropic voxel size in mm, 1 to 8 (2 mm: 98x116x94 voxels, about 1 s per subject).",
        ),
    ] = 2.0,
    tumour_fraction: Annotated[
        float,
        typer.Option("--tumour-fraction", help="Share of subjects with a glioma, 0 to 1."),
    ] = 0.85,
    profiles: Annotated[
        Path | None,
        typer.Option(
            "--profiles",
            help="TOML file of scanner profiles (same schema as the built-in "
            "phantom/profiles/default.toml) that replaces the built-in ones; site k uses "
            "profile k mod their number.",
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Worker processes (1 = this process).")
    ] = 2,
    preview: Annotated[
        bool,
        typer.Option("--preview/--no-preview", help="Also write <out>/preview.png."),
    ] = True,
) -> None:
    """Generate a realistic multi-site brain-tumour MRI phantom (BraTS 2021 layout).

    Built from nilearn's MNI152 template, with no download.
    Per subject: a random smooth deformation and, usually, a glioma.
    Per site: a scanner profile (field, TR/TE/TI, bias, noise, blur, gain).
    An unchanged phantom in --out is reused, not regenerated.
    """
    # Validate everything before any work: bad options exit with code 2.
    try:
        cfg = PhantomConfig(
            sites=sites,
            subjects_per_site=subjects_per_site,
            seed=seed,
            spacing_mm=spacing_mm,
            tumour_fraction=tumour_fraction,
            profiles_file=profiles,
        )
    except ValidationError as exc:
        raise _config_error(exc) from exc
    try:
        load_profiles(cfg.profiles_file)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--profiles") from exc
    try:
        manifest = generate_phantom(cfg, out, workers=workers, progress=True)
    except PhantomOutputError as exc:
        raise typer.BadParameter(str(exc), param_hint="--out") from exc

    console = Console()
    n_subjects = sum(len(s.subjects) for s in manifest.sites)
    console.print(f"phantom: {len(manifest.sites)} site(s), {n_subjects} subject(s) in {out}")
    for site in manifest.sites:
        grades = [s.grade for s in site.subjects]
        console.print(
            f"  {site.name}: {site.profile.name:<18} HGG {grades.count('HGG')}, "
            f"LGG {grades.count('LGG')}, none {grades.count('none')}"
        )
    png = out / "preview.png"
    # Redraw only when the data is newer, so a cached run leaves every file untouched.
    if preview and (not png.is_file() or png.stat().st_mtime < _manifest_mtime(out)):
        write_preview(out, png)
    if png.is_file():
        console.print(f"preview: {png}")


def _manifest_mtime(out: Path) -> float:
    return (out / MANIFEST_NAME).stat().st_mtime
