"""A site's validated, disk-cached studies, split into train and held-out eval."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
from monai.data import PersistentDataset
from monai.transforms import Compose

from client.data.adapter import DataProblem, Discovery, StudyRecord
from client.data.batches import Batch, eval_batch_list, train_batch_iterator
from client.data.load_transforms import CHANNELS_KEY, GRID_KEY, LABEL_MAP_KEY
from client.data.read_errors import data_problem_in
from client.data.readers import read_header
from client.data.study_index import IndexEntry, StudyIndex, study_fingerprint
from client.data.study_list import discover_site
from client.data.transforms import (
    LABEL_KEY,
    PRESENT_KEY,
    STATS_KEYS,
    STUDY_KEY,
    build_deterministic_transforms,
    preprocessing_fingerprint,
)
from client.data.volume_limits import VolumeLimits
from shared.config import DataConfig

__all__ = ["NoUsableStudyError", "SiteDataset", "Split", "load_site_dataset", "split_studies"]

logger = logging.getLogger(__name__)

Split = Literal["train", "eval"]
_SPLITS: tuple[Split, ...] = ("train", "eval")
_FINGERPRINT_KEY = "fingerprint"


def split_studies(
    study_ids: Sequence[str], *, eval_fraction: float, seed: int
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Deterministically split study ids into (train, eval), both sorted.

    The split depends only on the set of ids, ``eval_fraction`` and ``seed`` (not on
    discovery order). Eval gets ``round(eval_fraction * n)`` studies, at least 1 when
    ``n >= 2`` and ``eval_fraction > 0``, and at least 2 when ``n >= 4`` (contrastive
    evaluation needs a negative from another study); train always keeps at least 2 when
    ``n >= 4`` (and at least 1 otherwise).
    """
    if seed < 0:
        raise ValueError(f"expected a non-negative seed, got {seed}.")
    ids = sorted(study_ids)
    n = len(ids)
    n_eval = round(eval_fraction * n)
    if eval_fraction > 0 and n >= 2:
        n_eval = max(2 if n >= 4 else 1, n_eval)
    n_eval = max(0, min(n_eval, n - (2 if n >= 4 else 1)))
    order = np.random.default_rng([seed, 0x5F1]).permutation(n)
    eval_ids = sorted(ids[i] for i in order[:n_eval])
    train_ids = sorted(ids[i] for i in order[n_eval:])
    return tuple(train_ids), tuple(eval_ids)


class NoUsableStudyError(ValueError):
    """A site folder in which not one study can be used; carries every problem found.

    Attributes:
        problems: one per file or study at fault (discovery and validation), with the fix.
        num_studies: how many studies were found (and all skipped).
    """

    def __init__(self, message: str, *, problems: Sequence[DataProblem], num_studies: int) -> None:
        super().__init__(message)
        self.problems = tuple(problems)
        self.num_studies = num_studies


class _CachedSamples(Sequence[dict[str, Any]]):
    """Read-only Sequence view of a PersistentDataset (each access reads one cache file)."""

    def __init__(self, ds: PersistentDataset) -> None:
        self._ds = ds

    def __len__(self) -> int:
        return len(self._ds)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self._ds[i] for i in range(len(self))[index]]
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample index {index} out of range for {len(self)} samples")
        sample: dict[str, Any] = self._ds[index]
        return sample


class SiteDataset:
    """The valid studies of one site: cached deterministic samples and seeded batches.

    Build it with :func:`load_site_dataset`. Samples come from MONAI's PersistentDataset:
    Flower deployments start a fresh process per message, so an in-memory cache would be
    rebuilt (all NIfTI re-read) every round; the on-disk cache is read instead.
    """

    def __init__(
        self, *, data: DataConfig, splits: Mapping[Split, PersistentDataset],
        stats: Mapping[str, Mapping[str, np.ndarray]], problems: Sequence[DataProblem],
        subjects: Mapping[str, str] | None = None,
    ) -> None:
        self.data = data
        self._splits = dict(splits)
        self._stats = dict(stats)
        self._problems = tuple(problems)
        self._subjects = dict(subjects or {})

    @staticmethod
    def _ids(ds: PersistentDataset) -> tuple[str, ...]:
        return tuple(item[STUDY_KEY] for item in ds.data)

    @property
    def train_ids(self) -> tuple[str, ...]:
        """Study ids used for training (sorted)."""
        return self._ids(self._splits["train"])

    @property
    def eval_ids(self) -> tuple[str, ...]:
        """Held-out study ids (sorted; may be empty)."""
        return self._ids(self._splits["eval"])

    @property
    def problems(self) -> tuple[DataProblem, ...]:
        """Everything reported while discovering and validating the site's data."""
        return self._problems

    @property
    def num_studies(self) -> int:
        """Valid studies (train + eval)."""
        return len(self._splits["train"]) + len(self._splits["eval"])

    def preprocessed(self, split: Split) -> Sequence[dict[str, Any]]:
        """Cached deterministic samples of a split (read lazily from disk).

        Each sample: ``study_id``, ``image`` (M, D, H, W) float32 in [0, 1], ``present``
        (M,), ``fg_mean`` (M,), ``fg_std`` (M,), ``fg_hist`` (M, bins) and, when the study
        has one, ``label`` (1, D, H, W) uint8. D, H, W vary per study.
        """
        if split not in self._splits:
            raise ValueError(f"expected split to be one of {list(_SPLITS)}, got {split!r}.")
        return _CachedSamples(self._splits[split])

    def train_batches(self, *, batch_size: int, seed: int) -> Iterator[Batch]:
        """Endless batches of random aligned crops of the training studies.

        Reshuffled each pass; the same seed gives identical batches (for any
        ``data.num_workers``). Batches hold min(batch_size, studies) studies, never one
        alone when two or more exist.

        Yields:
            ``image`` (B, M, c, c, c) float32, ``present`` (B, M), ``fg_mean`` (B, M),
            ``fg_std`` (B, M), ``fg_hist`` (B, M, bins); c = ``data.crop_size``.
        """
        return train_batch_iterator(
            self.preprocessed("train"), data=self.data, batch_size=batch_size, seed=seed
        )

    def eval_batches(self, *, batch_size: int, num_batches: int, seed: int) -> list[Batch]:
        """Deterministic crops of the held-out studies (same keys as train batches).

        Returns an empty list when the site has no eval study.
        """
        return eval_batch_list(
            self.preprocessed("eval"), data=self.data, batch_size=batch_size,
            num_batches=num_batches, seed=seed,
        )

    def study_stats(self, split: Split = "train") -> list[dict[str, np.ndarray]]:
        """Per valid study of ``split``: ``present`` (M,), ``fg_mean`` (M,), ``fg_std``
        (M,), ``fg_hist`` (M, bins) as float32 arrays, without ids (input to the site's
        anonymized statistics). Read from the index, not from the cached volumes.
        """
        if split not in _SPLITS:
            raise ValueError(f"expected split to be one of {list(_SPLITS)}, got {split!r}.")
        ids = self.train_ids if split == "train" else self.eval_ids
        return [{k: np.array(v) for k, v in self._stats[sid].items()} for sid in ids]

    def subject_of(self, study_id: str) -> str:
        """The patient a study belongs to (``StudyRecord.subject``: the study itself when the
        layout records no patient)."""
        return self._subjects.get(study_id, study_id)

    def patient_study_stats(self) -> list[tuple[str, str, dict[str, np.ndarray]]]:
        """``(subject, study_id, stats)`` for every valid study of both splits, sorted by
        subject then study id; ``stats`` as in :meth:`study_stats`. Stays on the site: the
        statistics release bounds each patient's contribution from it
        (client/patient_contributions.py)."""
        rows = [(self.subject_of(sid), sid, {k: np.array(v) for k, v in self._stats[sid].items()})
                for sid in (*self.train_ids, *self.eval_ids)]
        return sorted(rows, key=lambda row: (row[0], row[1]))


def load_site_dataset(
    data_dir: Path, *, data: DataConfig, cache_dir: Path, seed: int,
    studies: Sequence[StudyRecord] | None = None, samples_dir: Path | None = None,
) -> SiteDataset:
    """Discover, validate, cache and split one site's studies.

    Each study is loaded once through the deterministic transforms (which also fills the
    disk cache); one with a data error (a file that is missing, unreadable, refused or too
    large, see ``client.data.read_errors``) is skipped and reported as a DataProblem
    (logged as one warning line each). ``cache_dir/study_index.json`` remembers the
    outcome per study, keyed by its files' sizes and times, the preprocessing settings,
    the pipeline's code (``client.data.pipeline_version``) and ``data.max_voxels``, so
    re-opening an unchanged site reads no image file, and a code fix or a changed cap
    validates again.

    Args:
        data_dir: the site folder, in the layout named by ``data.layout``, or holding a
            ``fedmm-studies.json`` study list (``client.data.study_list``), which wins.
        data: the run's data settings.
        cache_dir: a folder of this site's own (created if missing).
        seed: seeds the train/eval split.
        studies: an explicit list of studies to use instead of discovering ``data_dir``
            (e.g. one virtual site's share of a partitioned dataset).
        samples_dir: where the preprocessed studies are kept (default
            ``cache_dir/samples``). Each file is named by a hash of the study's id, files,
            their sizes and times, the preprocessing settings and the pipeline's code, so a
            folder can be shared by sites and runs on one machine (``simulate`` does).

    Raises:
        NoUsableStudyError: no readable study at all (a ValueError; the message lists the
            first problems, ``problems`` holds them all).
        Exception: anything that is not a data error (a full disk, memory, a bug) propagates
            and is never remembered as a problem of the study.
    """
    if studies is not None:
        discovery = Discovery(studies=tuple(studies))
    else:
        discovery = discover_site(Path(data_dir), layout=data.layout)
    cache_dir = Path(cache_dir)
    samples_dir = Path(samples_dir) if samples_dir is not None else cache_dir / "samples"
    prep = preprocessing_fingerprint(data)
    transform = build_deterministic_transforms(data)
    index = StudyIndex.load(cache_dir)
    problems = list(discovery.problems)
    entries: list[tuple[str, IndexEntry]] = []
    items: dict[str, dict[str, Any]] = {}
    for record in discovery.studies:
        fingerprint = study_fingerprint(record, preprocessing=prep)
        item = _item(record, data=data, fingerprint=fingerprint)
        # The cap decides validity, not the sample: it keys the verdict, not the cache file.
        verdict_key = f"{fingerprint}:max_voxels={data.max_voxels}"
        entry = index.lookup(record.study_id, verdict_key)
        if entry is None:
            entry = _validate(
                record, item, fingerprint=verdict_key, data=data, transform=transform,
                samples_dir=samples_dir,
            )
        entries.append((record.study_id, entry))
        problems.extend(entry.problems)
        if entry.valid:
            items[record.study_id] = item
    index.replace(entries)
    index.save()
    for problem in problems:
        logger.warning("Skipping data: %s", problem)
    if not items:
        listed = "".join(f"\n  - {p}" for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise NoUsableStudyError(
            f"Expected at least one readable study in {data_dir} (layout {data.layout!r}, "
            f"modalities {list(data.modalities)}); got none of {len(discovery.studies)}. "
            f"Fix the problems below:{listed}{more}",
            problems=problems, num_studies=len(discovery.studies),
        )
    train_ids, eval_ids = split_studies(list(items), eval_fraction=data.eval_fraction, seed=seed)
    splits: dict[Split, PersistentDataset] = {
        split: PersistentDataset(
            [items[i] for i in ids], transform=transform, cache_dir=samples_dir
        )
        for split, ids in zip(_SPLITS, (train_ids, eval_ids), strict=True)
    }
    stats = {sid: entry.stats for sid, entry in entries if entry.valid and entry.stats}
    subjects = {r.study_id: r.subject for r in discovery.studies if r.study_id in items}
    return SiteDataset(data=data, splits=splits, stats=stats, problems=problems,
                       subjects=subjects)


def _item(record: StudyRecord, *, data: DataConfig, fingerprint: str) -> dict[str, Any]:
    """The PersistentDataset input of a study; its hash names the cache file.

    The fingerprint is part of it so that a changed file or setting misses the cache
    (MONAI hashes the item only, not the files or the transforms). Reading instructions
    (channels, label map, grid reference) are added only when the study has them, so a
    plain 3D co-registered study keeps the item (and cache file) it always had.
    """
    item: dict[str, Any] = {STUDY_KEY: record.study_id, _FINGERPRINT_KEY: fingerprint}
    used = [m for m in data.modalities if m in record.images]
    item |= {m: str(record.images[m]) for m in used}
    if record.label is not None:
        item[LABEL_KEY] = str(record.label)
    channels = {m: record.channels[m] for m in used if m in record.channels}
    if channels:
        item[CHANNELS_KEY] = channels
    if record.label_map is not None and record.label is not None:
        item[LABEL_MAP_KEY] = dict(sorted(record.label_map.items()))
    if record.grid_reference is not None:
        item[GRID_KEY] = record.grid_reference
    return item


def _study_folder(record: StudyRecord) -> Path:
    return next(iter(record.images.values())).parent


def _validate(
    record: StudyRecord, item: dict[str, Any], *, fingerprint: str, data: DataConfig,
    transform: Compose, samples_dir: Path,
) -> IndexEntry:
    """Load one study through the deterministic transforms (writing its cache file)."""
    if not any(m in record.images for m in data.modalities):
        missing = DataProblem(
            path=_study_folder(record),
            problem=f"expected at least one of the run's modalities {list(data.modalities)}, "
            f"got {sorted(record.images)}.",
            fix="add one of them to the study or change data.modalities.",
        )
        return IndexEntry(fingerprint, (missing,))
    try:
        # The size cap, from the headers: a cached sample would skip the pipeline's own check.
        limits = VolumeLimits.from_config(data)
        for path in _volume_paths(record, item):
            header = read_header(path)
            if header is not None:
                limits.check(header)
        sample = PersistentDataset([item], transform=transform, cache_dir=samples_dir)[0]
    except Exception as err:
        problem = data_problem_in(err)
        if problem is None:
            raise  # not the data's fault (disk, memory, code): never remembered as a problem
        return IndexEntry(fingerprint, (problem,))
    stats = {k: sample[k].numpy().copy() for k in (PRESENT_KEY, *STATS_KEYS)}
    return IndexEntry(fingerprint, (), stats)


def _volume_paths(record: StudyRecord, item: Mapping[str, Any]) -> list[Path]:
    """The distinct files and series of a study that the pipeline will read."""
    keys = [m for m in record.images if m in item]
    if LABEL_KEY in item:
        keys.append(LABEL_KEY)
    return list(dict.fromkeys(Path(str(item[k])) for k in keys))
