"""Scanner effects on clean signals: blur, bias field, gain, Rician noise, skull-stripping."""

from __future__ import annotations

import math
from typing import Final

import numpy as np
from scipy import ndimage as ndi

from simulations.phantom.fields import smooth_random_field
from simulations.phantom.profiles import ScannerProfileConfig

#: Receive-coil inhomogeneity varies over about 9 cm.
BIAS_CORRELATION_MM: Final = 90.0
#: Share of the log-bias variance that belongs to the site's coil (same for all its subjects);
#: the rest varies with head position per subject and sequence.
SITE_BIAS_SHARE: Final = 0.7
_FWHM_PER_SIGMA: Final = 2.0 * math.sqrt(2.0 * math.log(2.0))


def blur_sigmas_vox(profile: ScannerProfileConfig, spacing_mm: float) -> tuple[float, ...]:
    """Gaussian sigma per axis (voxels) for the profile's point-spread function.

    A 2D slice of thickness `t` averages `t` mm along the slice axis; the grid already
    averages one voxel, so only the excess `sqrt(t^2 - spacing^2)` (as a FWHM) is added.
    """
    sigmas = [profile.blur_sigma_mm / spacing_mm] * 3
    thickness = profile.slice_thickness_mm
    if thickness is not None and thickness > spacing_mm:
        extra = math.sqrt(thickness**2 - spacing_mm**2) / _FWHM_PER_SIGMA / spacing_mm
        axis = profile.slice_axis
        sigmas[axis] = math.hypot(sigmas[axis], extra)
    # Sub-0.1-voxel blurs are invisible; skipping them saves a filter pass.
    return tuple(s if s >= 0.1 else 0.0 for s in sigmas)


def sample_site_coil(
    rng: np.random.Generator, shape: tuple[int, int, int], *, spacing_mm: float
) -> np.ndarray:
    """The site's receive-coil pattern `(D, H, W)`: a unit-variance smooth log-field."""
    return smooth_random_field(rng, shape, spacing_mm=spacing_mm, correlation_mm=BIAS_CORRELATION_MM)[0]


def acquire(
    clean: np.ndarray,
    *,
    profile: ScannerProfileConfig,
    wm_signal: np.ndarray,
    brain_mask: np.ndarray,
    site_coil: np.ndarray,
    rng: np.random.Generator,
    spacing_mm: float,
) -> np.ndarray:
    """Turn clean signed signals into skull-stripped magnitude images as a scanner would.

    Steps per contrast: blur by the point-spread function, multiply by a smooth bias field
    `exp(a * f)` (f mixes the site's coil pattern with a subject/sequence part) and the
    receiver gain, add complex Gaussian noise and take the magnitude (Rician statistics),
    then set everything outside the brain mask to exactly 0, as BraTS skull-stripping does.

    Args:
        clean: `(C, D, H, W)` signed noise-free signals.
        profile: the scanner.
        wm_signal: `(C,)` signal of pure white matter per contrast; noise is relative to it.
        brain_mask: `(D, H, W)` bool brain mask.
        site_coil: `(D, H, W)` the site's unit-variance log-bias pattern.
        rng: source of randomness (subject bias part and noise).
        spacing_mm: voxel size in mm.

    Returns:
        `(C, D, H, W)` float32 non-negative images, 0 outside the mask.
    """
    n_contrasts = clean.shape[0]
    sigmas = blur_sigmas_vox(profile, spacing_mm)
    subject_bias = smooth_random_field(
        rng,
        brain_mask.shape,
        spacing_mm=spacing_mm,
        correlation_mm=BIAS_CORRELATION_MM,
        n_fields=n_contrasts,
    )
    # Work on brain voxels only: the rest is zeroed anyway, and it is ~75 % of the grid.
    site_part = site_coil[brain_mask] * np.float32(math.sqrt(SITE_BIAS_SHARE))
    n_brain = int(brain_mask.sum())
    out = np.zeros(clean.shape, dtype=np.float32)
    for c in range(n_contrasts):
        img = clean[c]
        if any(sigmas):
            img = ndi.gaussian_filter(img, sigmas, truncate=3.0)
        log_bias = site_part + subject_bias[c][brain_mask] * np.float32(math.sqrt(1.0 - SITE_BIAS_SHARE))
        values = img[brain_mask] * np.exp(np.float32(profile.bias_field_amplitude) * log_bias)
        values *= np.float32(profile.intensity_scale)
        sigma = profile.noise_rel_wm * abs(float(wm_signal[c])) * profile.intensity_scale
        if sigma > 0:
            noise = rng.standard_normal((2, n_brain), dtype=np.float32) * np.float32(sigma)
            values = np.hypot(values + noise[0], noise[1])
        else:
            values = np.abs(values)
        out[c][brain_mask] = values
    return out
