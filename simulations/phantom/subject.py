"""One simulated subject: warp the template, grow a tumour, form and acquire four contrasts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from simulations.phantom.acquisition import acquire, sample_site_coil
from simulations.phantom.deformation import sample_deformation, source_coordinates, warp
from simulations.phantom.profiles import ScannerProfileConfig
from simulations.phantom.signal import mix_partial_volumes, tissue_signals
from simulations.phantom.template import BrainTemplate
from simulations.phantom.tissues import TissueTableConfig
from simulations.phantom.tumour import (
    Grade,
    apply_mass_effect,
    grow_tumour,
    sample_tumour_plan,
)

# Stream tags in the SeedSequence spawn key, so site-level and subject-level draws never
# share a stream.
_SITE_STREAM = 0
_SUBJECT_STREAM = 1


@dataclass(frozen=True)
class SubjectVolumes:
    """Everything simulated for one subject.

    Attributes:
        images: `(4, D, H, W)` float32 T1, T1ce, T2, FLAIR (order `CONTRASTS`), 0 outside
            the brain.
        seg: `(D, H, W)` uint8 BraTS 2021 labels.
        fractions: `(T, D, H, W)` float32 tissue fractions (order `TISSUES`), the ground
            truth behind the images.
        brain_mask: `(D, H, W)` bool.
        grade: "HGG", "LGG" or "none".
    """

    images: np.ndarray
    seg: np.ndarray
    fractions: np.ndarray
    brain_mask: np.ndarray
    grade: Grade


def site_rng(seed: int, site: int) -> np.random.Generator:
    """Generator for a site's own draws (its coil pattern)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_SITE_STREAM, site)))


def subject_rngs(seed: int, site: int, subject: int) -> list[np.random.Generator]:
    """Independent generators for a subject's anatomy, tumour and acquisition.

    Seeded from `(seed, site, subject)` alone, so a subject is the same whichever worker
    process simulates it and in whatever order; separate streams keep, e.g., the anatomy
    unchanged when only the scanner profile changes.
    """
    root = np.random.SeedSequence(seed, spawn_key=(_SUBJECT_STREAM, site, subject))
    return [np.random.default_rng(child) for child in root.spawn(3)]


def simulate_subject(
    *,
    template: BrainTemplate,
    profile: ScannerProfileConfig,
    table: TissueTableConfig,
    seed: int,
    site: int,
    subject: int,
    tumour_fraction: float,
) -> SubjectVolumes:
    """Simulate one subject scanned at one site.

    Args:
        template: normal-tissue template at the working spacing.
        profile: the site's scanner.
        table: tissue relaxation properties.
        seed: dataset seed.
        site: site index (0-based).
        subject: subject index within the site (0-based).
        tumour_fraction: probability that the subject has a tumour.

    Returns:
        Images, labels and ground-truth fractions of the subject.
    """
    rng_anatomy, rng_tumour, rng_scan = subject_rngs(seed, site, subject)
    s = template.spacing_mm
    # Scale about the brain's centre of mass so the brain stays in the field of view.
    centre = np.array(ndi.center_of_mass(template.tissues.sum(axis=0)))
    params = sample_deformation(rng_anatomy, template.shape, spacing_mm=s, centre_vox=centre)
    coords = source_coordinates(params)
    plan = sample_tumour_plan(rng_tumour, template=template, coords=coords, tumour_fraction=tumour_fraction)
    if plan is not None:
        apply_mass_effect(coords, plan, spacing_mm=s, scale=params.scale)
    normal = warp(template.tissues, coords, support=template.support)
    grown = grow_tumour(normal, plan, rng=rng_tumour, spacing_mm=s)
    mask = grown.fractions.sum(axis=0) >= 0.5

    signals = tissue_signals(profile, table)
    clean = mix_partial_volumes(grown.fractions, signals, tumour_texture=grown.texture)
    images = acquire(
        clean,
        profile=profile,
        wm_signal=signals[:, 0],
        brain_mask=mask,
        site_coil=sample_site_coil(site_rng(seed, site), template.shape, spacing_mm=s),
        rng=rng_scan,
        spacing_mm=s,
    )
    return SubjectVolumes(
        images=images,
        seg=grown.seg,
        fractions=grown.fractions,
        brain_mask=mask,
        grade=plan.grade if plan is not None else "none",
    )
