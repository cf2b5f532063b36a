"""A small JSON index in a site's cache: which studies were valid, so a re-open skips NIfTI."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from client.data.adapter import DataProblem, StudyRecord

__all__ = ["IndexEntry", "StudyIndex", "study_fingerprint"]

logger = logging.getLogger(__name__)

_VERSION = 1
_FILE_NAME = "study_index.json"


def study_fingerprint(record: StudyRecord, *, preprocessing: str) -> str:
    """Hash of a study's files (path, size, mtime) and of the preprocessing settings.

    Any edit, replacement or touch of a file, and any change of the deterministic
    pipeline, gives a new fingerprint; the study is then validated (and cached) again.
    A series folder (DICOM, PNG slices) counts every file in it. The record's reading
    instructions (channels, label map, grid reference) count too, when it has them.
    """
    files = sorted(record.images.items())
    if record.label is not None:
        files.append(("label", record.label))
    parts: list[Any] = [preprocessing, record.study_id]
    for key, path in files:
        parts.append([key, str(path), *_file_state(path)])
    reading = {
        "channels": dict(sorted(record.channels.items())),
        "label_map": sorted((record.label_map or {}).items()),
        "grid": record.grid_reference,
    }
    if any(reading.values()):
        parts.append(reading)
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]


def _file_state(path: Path) -> list[Any]:
    try:
        if path.is_dir():
            return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(path.iterdir())]
        st = path.stat()
        return [st.st_size, st.st_mtime_ns]
    except OSError:
        # A file that vanished since discovery: a fingerprint that matches nothing, so
        # validation runs and reports it.
        return [None, None]


@dataclass(frozen=True)
class IndexEntry:
    """What validation found for one study, under the fingerprint it was found for.

    Attributes:
        fingerprint: ``study_fingerprint`` at validation time.
        problems: empty when the study is valid.
        stats: for a valid study, ``present`` (M,), ``fg_mean`` (M,), ``fg_std`` (M,)
            and ``fg_hist`` (M, bins) as float32 arrays, so statistics need no cache reads.
    """

    fingerprint: str
    problems: tuple[DataProblem, ...] = ()
    stats: Mapping[str, np.ndarray] | None = None

    @property
    def valid(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "problems": [
                {"path": str(p.path), "problem": p.problem, "fix": p.fix} for p in self.problems
            ],
            "stats": None
            if self.stats is None
            else {k: np.asarray(v).tolist() for k, v in self.stats.items()},
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> IndexEntry:
        stats = raw.get("stats")
        return cls(
            fingerprint=str(raw["fingerprint"]),
            problems=tuple(
                DataProblem(path=Path(p["path"]), problem=p["problem"], fix=p["fix"])
                for p in raw.get("problems", [])
            ),
            stats=None
            if stats is None
            else {k: np.asarray(v, dtype=np.float32) for k, v in stats.items()},
        )


class StudyIndex:
    """``<cache_dir>/study_index.json``: study id -> IndexEntry.

    Lives beside MONAI's PersistentDataset files; it stays on the site (it names studies).
    """

    def __init__(self, path: Path, entries: Mapping[str, IndexEntry] | None = None) -> None:
        self.path = path
        self._entries: dict[str, IndexEntry] = dict(entries or {})

    @classmethod
    def load(cls, cache_dir: Path) -> StudyIndex:
        """Read the index, or start an empty one if it is missing, stale or unreadable."""
        path = Path(cache_dir) / _FILE_NAME
        if not path.is_file():
            return cls(path)
        try:
            raw = json.loads(path.read_text())
            if raw.get("version") != _VERSION:
                return cls(path)
            entries = {sid: IndexEntry.from_json(e) for sid, e in raw["studies"].items()}
        except (OSError, ValueError, KeyError, TypeError) as err:
            # A damaged index only costs a re-validation; never block the site on it.
            logger.warning("Ignoring unreadable study index %s (%s); re-validating.", path, err)
            return cls(path)
        return cls(path, entries)

    def lookup(self, study_id: str, fingerprint: str) -> IndexEntry | None:
        """The entry for ``study_id`` if it was made for this exact ``fingerprint``."""
        entry = self._entries.get(study_id)
        return entry if entry is not None and entry.fingerprint == fingerprint else None

    def replace(self, entries: Iterable[tuple[str, IndexEntry]]) -> None:
        """Keep exactly these entries (studies no longer on disk drop out)."""
        self._entries = dict(entries)

    def save(self) -> None:
        """Write atomically, so a killed process never leaves half an index."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "version": _VERSION,
            "studies": {sid: e.to_json() for sid, e in sorted(self._entries.items())},
        }
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".study_index.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(payload, f, indent=1)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
