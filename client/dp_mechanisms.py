"""OpenDP measurements behind a statistics release, each with OpenDP's own privacy map.

Why OpenDP (opendp.org, 0.16): its measurements come with written proofs, its Laplace
mechanism samples discrete Laplace noise exactly (integers as they are, floats on a grid of
2^k, the construction of Canonne, Kamath and Steinke 2020) so it is not open to Mironov's
2012 floating-point attack on textbook Laplace sampling, and its float sums account for
rounding in their sensitivity (Casacuberta et al. 2022). fedmm adds no noise of its own:
each released number comes from one measurement built here, and the epsilon it costs is
what OpenDP's privacy map returns for one patient added or removed.

Three kinds, all under the symmetric distance (one patient = one row per column):

* a **count** of rows -> discrete Laplace on the integer count (sensitivity 1);
* a **bounded sum**: clamp every row to public bounds, sum (sensitivity = the width of
  the bounds plus float slack) -> Laplace on a 2^k grid;
* a **histogram**: each patient's normalized histogram becomes ``HIST_UNITS`` rows, one
  per unit of mass, labelled by bin (floor of mass x units, so at most ``HIST_UNITS`` rows
  per patient); count by bin -> discrete Laplace on each bin (L1 sensitivity
  ``HIST_UNITS`` for ``HIST_UNITS`` rows in or out).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import numpy as np
import opendp.prelude as dp

#: Units of mass per patient histogram: resolution 1/256, far below any noise.
HIST_UNITS = 256
OPENDP_VERSION = version("opendp")
MECHANISM = (f"OpenDP {OPENDP_VERSION}: discrete Laplace on patient counts and histogram "
             "units, Laplace on a 2^k grid on clamped sums; basic composition")

dp.enable_features("contrib")


@dataclass(frozen=True)
class Mechanism:
    """One OpenDP measurement and what it costs.

    Attributes:
        measurement: the OpenDP Measurement (call it with the column's rows).
        scale: its noise scale, in the units of its output.
        epsilon: OpenDP's privacy map at ``d_in`` (one patient added or removed).
        d_in: the symmetric distance of one patient (1, or ``HIST_UNITS`` for histograms).
    """

    measurement: Any
    scale: float
    epsilon: float
    d_in: int

    def __call__(self, rows: Any) -> Any:
        return self.measurement(rows)


def _float_rows() -> tuple[Any, Any]:
    return dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.symmetric_distance()


def _calibrate(make: Any, *, d_in: int, epsilon: float) -> Mechanism:
    """The least noise whose privacy map at ``d_in`` is at most ``epsilon`` (OpenDP's search)."""
    if not np.isfinite(epsilon) or epsilon <= 0:
        raise ValueError(f"expected a finite, positive epsilon share, got {epsilon!r}")
    scale = dp.binary_search_param(make, d_in=d_in, d_out=epsilon, T=float)
    measurement = make(scale)
    spent = float(measurement.map(d_in))
    if not spent <= epsilon:
        raise ValueError(f"OpenDP's calibrated measurement costs {spent} > the share {epsilon}")
    return Mechanism(measurement=measurement, scale=float(scale), epsilon=spent, d_in=d_in)


@functools.lru_cache(maxsize=256)
def count_mechanism(epsilon: float) -> Mechanism:
    """Noisy number of rows (patients): an int, discrete Laplace."""
    counted = _float_rows() >> dp.t.then_count()
    return _calibrate(lambda s: counted >> dp.m.then_laplace(scale=s), d_in=1, epsilon=epsilon)


@functools.lru_cache(maxsize=256)
def sum_mechanism(bounds: tuple[float, float], epsilon: float) -> Mechanism:
    """Noisy sum of rows clamped to ``bounds``: a float."""
    summed = _float_rows() >> dp.t.then_clamp(bounds) >> dp.t.then_sum()
    return _calibrate(lambda s: summed >> dp.m.then_laplace(scale=s), d_in=1, epsilon=epsilon)


@functools.lru_cache(maxsize=256)
def histogram_mechanism(bins: int, epsilon: float) -> Mechanism:
    """Noisy units of mass per bin over all patients: ``bins`` ints, discrete Laplace."""
    counted = (dp.vector_domain(dp.atom_domain(T=int)), dp.symmetric_distance()) >> \
        dp.t.then_count_by_categories(categories=list(range(bins)), null_category=False)
    return _calibrate(lambda s: counted >> dp.m.then_laplace(scale=s), d_in=HIST_UNITS,
                      epsilon=epsilon)


def histogram_rows(histograms: np.ndarray) -> np.ndarray:
    """Rows of the histogram mechanism: per patient, bin ``b`` repeated floor(h_b x units).

    Args:
        histograms: (n, bins) non-negative rows with sum 1 (client/patient_contributions.py).

    Returns:
        (rows,) int32 bin labels (OpenDP's int; a NumPy array crosses into OpenDP at once).
    """
    if histograms.size == 0:
        return np.zeros(0, dtype=np.int32)
    units = np.floor(np.clip(histograms, 0.0, 1.0) * HIST_UNITS).astype(np.int64)
    for row in np.flatnonzero(units.sum(axis=1) > HIST_UNITS):  # rounding: keep the bound
        excess = int(units[row].sum()) - HIST_UNITS
        units[row, int(np.argmax(units[row]))] -= excess
    per_bin = units.sum(axis=0)
    return np.repeat(np.arange(histograms.shape[1], dtype=np.int32), per_bin)
