"""Each site's cached dataset, opened again after the run for the report's images and crops."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from client.data import SiteDataset, load_site_dataset
from client.data.dataset import NoUsableStudyError
from client.data.site_problems import PROBLEMS_FILE, no_usable_study_line
from shared.config import DataConfig
from simulations.report.run_folder import RunFolder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportSite:
    """One site as the report sees it: its position in the run, folder name and data."""

    index: int
    name: str
    dataset: SiteDataset


@dataclass(frozen=True)
class OpenedSites:
    """The sites that could be opened, and one note per site that could not."""

    sites: tuple[ReportSite, ...]
    notes: tuple[str, ...]


def open_sites(
    run: RunFolder, *, data_root: Path, site_dirs: Sequence[str], data: DataConfig, seed: int,
    scratch: Path, samples_dir: Path | None = None,
) -> OpenedSites:
    """Open ``data_root/<site_dirs[k]>`` with the run's data settings and split seed.

    The run's own site cache (``<run>/sites/site-k/cache``) is reused when it exists, so
    nothing is preprocessed twice and the held-out split is the one the sites used;
    otherwise a cache under ``scratch`` is filled.

    Args:
        run: the run folder.
        data_root: the folder holding one sub-folder per site.
        site_dirs: site folder names, in the run's site order.
        data: the run's data settings.
        seed: the run's seed (it seeds the train/held-out split).
        scratch: a temporary folder for caches the run did not keep.
        samples_dir: the machine-wide folder of preprocessed studies the run's sites used
            (``sites.samples_dir`` of its config), when it still exists.
    """
    sites: list[ReportSite] = []
    notes: list[str] = []
    for index, name in enumerate(site_dirs):
        cache = run.site_state_dir(index) / "cache"
        if not cache.is_dir():
            cache = Path(scratch) / f"site-{index}"
        try:
            dataset = load_site_dataset(Path(data_root) / name, data=data, cache_dir=cache, seed=seed,
                                        samples_dir=samples_dir)
        except NoUsableStudyError as err:
            listed = run.site_state_dir(index) / PROBLEMS_FILE
            notes.append(no_usable_study_line(name, studies=err.num_studies, problems=len(err.problems),
                                              problems_file=listed if listed.is_file() else None))
            continue
        except Exception as err:  # one unreadable site must not cost the others their figures
            log.warning("Report: cannot open site %s: %s", name, err)
            notes.append(f"{name}: could not be opened ({type(err).__name__}: {err}).")
            continue
        sites.append(ReportSite(index=index, name=name, dataset=dataset))
    return OpenedSites(sites=tuple(sites), notes=tuple(notes))


def first_study(dataset: SiteDataset) -> dict[str, Any]:
    """The preprocessed sample of the site's first study by id, from whichever split holds it.

    Returns:
        The cached sample: ``study_id``, ``image`` (M, D, H, W) in [0, 1], ``present`` (M,),
        ``fg_mean`` (M,), ``fg_std`` (M,), ...
    """
    located = [(sid, "train", i) for i, sid in enumerate(dataset.train_ids)]
    located += [(sid, "eval", i) for i, sid in enumerate(dataset.eval_ids)]
    if not located:
        raise ValueError("expected a site with at least one valid study, got none")
    _, split, position = min(located)
    sample: dict[str, Any] = dataset.preprocessed(split)[position]  # type: ignore[arg-type]
    return sample


def mid_axial_slice(volume: np.ndarray) -> np.ndarray:
    """The axial slice halfway up a ``(D, H, W)`` RAS volume, transposed for ``imshow``.

    The cached volumes are cropped to the brain, so the middle slice cuts through it.
    """
    if volume.ndim != 3:
        raise ValueError(f"expected a (D, H, W) volume, got shape {volume.shape}")
    return np.ascontiguousarray(volume[:, :, volume.shape[2] // 2].T)
