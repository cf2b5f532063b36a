"""Covariates a partitioner can split by: record fields, meta values, tumour size from labels."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from client.data import DataProblemError, StudyRecord
from client.data.readers import read_volume

__all__ = ["TUMOUR_SIZE", "UNKNOWN", "quantile_bins", "subject_covariates", "tumour_volume_ml"]

TUMOUR_SIZE = "tumour_size"
UNKNOWN = "unknown"
logger = logging.getLogger(__name__)


def tumour_volume_ml(label: Path) -> float:
    """Labelled (nonzero) volume of a segmentation file in millilitres.

    Raises:
        DataProblemError: the file cannot be read.
    """
    img = read_volume(label)
    voxel_ml = abs(float(np.linalg.det(img.affine.numpy()[:3, :3]))) / 1000.0
    return float((img.as_tensor() != 0).sum()) * voxel_ml


def _cached_volumes(labels: Sequence[Path], cache_file: Path | None) -> dict[Path, float | None]:
    """Tumour volumes of label files, remembered by (path, size, mtime) across runs."""
    cache: dict[str, float | None] = {}
    if cache_file is not None and cache_file.is_file():
        try:
            cache = json.loads(cache_file.read_text())
        except (OSError, json.JSONDecodeError):
            cache = {}
    out: dict[Path, float | None] = {}
    for label in labels:
        try:
            st = label.stat()
        except OSError:
            out[label] = None
            continue
        key = f"{label}|{st.st_size}|{st.st_mtime_ns}"
        if key not in cache:
            try:
                cache[key] = tumour_volume_ml(label)
            except DataProblemError as err:
                logger.warning("tumour_size: %s", err.problem)
                cache[key] = None
        out[label] = cache[key]
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, cache_file)
    return out


def quantile_bins(values: Mapping[str, float], *, bins: int, unit: str = "") -> dict[str, str]:
    """Map numeric values to ``bins`` quantile bins named ``q1 (<= x)``, ..., ``qN (> y)``."""
    if not values:
        return {}
    edges = np.quantile(np.fromiter(values.values(), dtype=float), np.linspace(0, 1, bins + 1)[1:-1])
    names = [f"q{k + 1} (<= {e:.3g}{unit})" for k, e in enumerate(edges)]
    names.append(f"q{bins} (> {edges[-1]:.3g}{unit})" if len(edges) else "q1")
    return {key: names[int(np.searchsorted(edges, v, side="left"))] for key, v in values.items()}


def subject_covariates(
    groups: Mapping[str, Sequence[StudyRecord]], by: str, *, bins: int, cache_file: Path | None = None,
) -> dict[str, str]:
    """One categorical value per subject for ``by`` (``UNKNOWN`` when a subject has none).

    ``by`` is ``site``, ``tumour_size`` (labelled mL of the subject's first labelled study,
    binned into ``bins`` quantiles) or a meta key; numeric meta values with more than
    ``bins`` distinct values are binned the same way.
    """
    if by == TUMOUR_SIZE:
        first = {s: next((r.label for r in recs if r.label is not None and r.label.is_file()), None)
                 for s, recs in groups.items()}
        volumes = _cached_volumes([p for p in first.values() if p is not None], cache_file)
        known = {s: volumes[p] for s, p in first.items() if p is not None and volumes.get(p) is not None}
        binned = quantile_bins({s: float(v) for s, v in known.items() if v is not None},
                               bins=bins, unit=" mL")
        return {s: binned.get(s, UNKNOWN) for s in groups}
    raw: dict[str, str] = {}
    for subject, recs in groups.items():
        value = recs[0].site if by == "site" else next((r.meta[by] for r in recs if by in r.meta), None)
        raw[subject] = UNKNOWN if value in (None, "") else str(value)
    numeric: dict[str, float] = {}
    for subject, value in raw.items():
        try:
            numeric[subject] = float(value)
        except ValueError:
            if value != UNKNOWN:
                return raw  # categorical
    if len(set(numeric.values())) > bins:
        binned = quantile_bins(numeric, bins=bins)
        return {s: binned.get(s, UNKNOWN) for s in raw}
    return raw
