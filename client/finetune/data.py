"""Labelled studies for fine-tuning: cached site samples, seeded label-fraction subsets."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from client.data import load_site_dataset
from shared.config import DataConfig

log = logging.getLogger(__name__)


def labelled_samples(
    data_root: Path, sites: Sequence[str], *, data: DataConfig, cache_dir: Path
) -> list[dict[str, Any]]:
    """All valid studies with a segmentation label from the named site folders.

    Each sample holds ``image (M, D, H, W)`` in [0, 1], ``label (1, D, H, W)`` (BraTS
    2021 numbering), ``present (M,)`` and ``site``. Studies without a label are skipped
    (and counted in a log line): fine-tuning needs labels.
    """
    out: list[dict[str, Any]] = []
    for site in sites:
        site_dir = data_root / site
        if not site_dir.is_dir():
            raise ValueError(f"expected a site folder {site_dir}, found none; check --data-root "
                             f"and the site names ({sorted(p.name for p in data_root.iterdir())}).")
        ds = load_site_dataset(site_dir, data=data, cache_dir=cache_dir / site, seed=0)
        samples = [*ds.preprocessed("train"), *ds.preprocessed("eval")]
        with_label = [s for s in samples if "label" in s]
        if len(with_label) < len(samples):
            log.warning("%s: %d of %d studies have no label and are not used for fine-tuning.",
                        site, len(samples) - len(with_label), len(samples))
        out += [{"image": s["image"], "label": s["label"], "present": s["present"],
                 "site": site, "study_id": s["study_id"]} for s in with_label]
    out.sort(key=lambda s: (s["site"], s["study_id"]))
    return out


def label_subset(samples: Sequence[dict[str, Any]], *, fraction: float, seed: int) -> list[dict[str, Any]]:
    """A fixed, seeded subset of ``round(fraction * n)`` studies (at least 2)."""
    n = len(samples)
    if n == 0:
        raise ValueError("no labelled training studies were found; fine-tuning needs labels.")
    k = min(n, max(2, round(fraction * n)))
    order = np.random.default_rng([seed, 0xF17E]).permutation(n)
    return [samples[i] for i in sorted(order[:k])]


def early_stopping_split(samples: Sequence[dict[str, Any]], *, fraction: float, seed: int
                         ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split labelled studies into (training, early-stopping) parts: a seeded
    ``round(fraction * n)`` studies (at least 1) are held out, at least 1 is trained on."""
    n = len(samples)
    if n < 2:
        raise ValueError(f"early stopping needs at least 2 labelled studies (1 to train on, 1 to "
                         f"stop on), found {n}; raise --label-fraction or turn early stopping off.")
    k = min(n - 1, max(1, round(fraction * n)))
    held = set(np.random.default_rng([seed, 0xE5]).permutation(n)[:k].tolist())
    return ([s for i, s in enumerate(samples) if i not in held],
            [s for i, s in enumerate(samples) if i in held])


def has_enhancing_tumour(label: Any) -> int:
    """The classification target: 1 when the study has enhancing tumour (BraTS label 4).

    For the phantom this is exactly its grade (HGG has an enhancing rim, LGG and tumour-free
    subjects have none); for real BraTS data it is the usual enhancing/non-enhancing split.
    """
    return int((np.asarray(label) == 4).any())
