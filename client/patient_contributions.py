"""Each patient's bounded contribution to a statistics release: one study per modality.

The privacy unit of a release is the patient, however many studies (visits, series) the
patient has. For each modality a patient contributes at most one row, taken from the
first of its studies (by study id) that has the modality with finite statistics, so that
adding or removing one patient changes every column by at most one row. Each row is
clamped to public bounds fixed in advance (mean in [0, 1], std in [0, 0.5], histogram
non-negative with L1 norm 1), never to bounds derived from the data. The mechanisms
(client/privacy.py) clamp again inside OpenDP, whose proofs rely on their own clamp.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: Public bounds of one patient's values (a [0, 1] variable has std at most 0.5).
MEAN_BOUNDS = (0.0, 1.0)
STD_BOUNDS = (0.0, 0.5)


@dataclass(frozen=True)
class ModalityColumns:
    """One row per patient for one modality. Never sent; input of the mechanisms.

    Attributes:
        means: (n,) per-patient foreground means, in ``MEAN_BOUNDS``.
        stds: (n,) per-patient foreground standard deviations, in ``STD_BOUNDS``.
        histograms: (n, bins) per-patient normalized histograms (rows sum to 1).
    """

    means: np.ndarray
    stds: np.ndarray
    histograms: np.ndarray

    @property
    def patients(self) -> int:
        return int(self.means.shape[0])


def bound_contributions(
    studies: Sequence[tuple[str, str, Mapping[str, np.ndarray]]], *, modalities: Sequence[str],
    bins: int,
) -> dict[str, ModalityColumns]:
    """Per modality, one clamped row per patient.

    Args:
        studies: ``(subject, study_id, stats)`` per valid study; ``stats`` holds ``present
            (M,)``, ``fg_mean (M,)``, ``fg_std (M,)`` and ``fg_hist (M, bins)`` in the run's
            modality order.
        modalities: the run's modality names (length M).
        bins: the run's histogram bins (``data.hist_bins``).

    Returns:
        Every name of ``modalities`` -> its columns (zero rows when no patient has it).

    Raises:
        ValueError: a study's arrays do not have the shapes the run implies.
    """
    first: dict[str, dict[str, tuple[float, float, np.ndarray]]] = {m: {} for m in modalities}
    for subject, study_id, stats in sorted(studies, key=lambda row: (row[0], row[1])):
        _check_shapes(study_id, stats, num_modalities=len(modalities), bins=bins)
        for m, name in enumerate(modalities):
            if subject in first[name] or float(stats["present"][m]) <= 0.5:
                continue
            mean, std = float(stats["fg_mean"][m]), float(stats["fg_std"][m])
            hist = np.asarray(stats["fg_hist"][m], dtype=np.float64)
            if not (np.isfinite(mean) and np.isfinite(std) and np.isfinite(hist).all()):
                continue  # a broken study is not this patient's row; a later one may be
            first[name][subject] = (mean, std, hist)
    return {name: _columns(list(rows.values()), bins=bins) for name, rows in first.items()}


def _check_shapes(study_id: str, stats: Mapping[str, np.ndarray], *, num_modalities: int,
                  bins: int) -> None:
    expected = {"present": (num_modalities,), "fg_mean": (num_modalities,),
                "fg_std": (num_modalities,), "fg_hist": (num_modalities, bins)}
    got = {k: tuple(np.shape(stats[k])) if k in stats else None for k in expected}
    if got != expected:
        raise ValueError(f"expected per-study statistics of shapes {expected} for study "
                         f"{study_id}, got {got}. Fix: reopen the site's dataset with the run's "
                         "data settings (the statistics come from its index).")


def _columns(rows: list[tuple[float, float, np.ndarray]], *, bins: int) -> ModalityColumns:
    means = np.clip(np.array([r[0] for r in rows], dtype=np.float64), *MEAN_BOUNDS)
    stds = np.clip(np.array([r[1] for r in rows], dtype=np.float64), *STD_BOUNDS)
    hists = np.zeros((len(rows), bins), dtype=np.float64)
    for i, (_, _, hist) in enumerate(rows):
        h = np.clip(hist, 0.0, None)
        total = h.sum()
        hists[i] = h / total if total > 0 else np.full(bins, 1.0 / bins)
    return ModalityColumns(means=means, stds=stds, histograms=hists)


def contributions_fingerprint(columns: Mapping[str, ModalityColumns]) -> str:
    """A digest of exactly what a release would cover (values, in patient order).

    Equal digests mean a release drawn from one is a release of the other: the site
    re-sends it instead of drawing fresh noise. Stays on the site (its privacy ledger).
    """
    digest = hashlib.sha256()
    for name in sorted(columns):
        col = columns[name]
        digest.update(name.encode())
        for array in (col.means, col.stds, col.histograms):
            digest.update(str(array.shape).encode())
            digest.update(np.ascontiguousarray(array, dtype="<f8").tobytes())
    return digest.hexdigest()
