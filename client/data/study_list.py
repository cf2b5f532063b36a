"""A site's studies written out as JSON (``fedmm-studies.json``), read back instead of discovery."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from client.data.adapter import DataProblem, Discovery, StudyRecord, get_adapter

__all__ = [
    "STUDY_LIST_FILE",
    "discover_site",
    "read_study_list",
    "record_from_json",
    "record_to_json",
    "write_study_list",
]

#: A site folder holding this file is read from it instead of being discovered with
#: ``data.layout``: `simulate` writes one per virtual site of a partitioned dataset.
STUDY_LIST_FILE = "fedmm-studies.json"
_SCHEMA = "fedmm.study-list/1"


def record_to_json(record: StudyRecord) -> dict[str, Any]:
    """A JSON-able dict of one record (absolute paths as strings)."""
    return {
        "study_id": record.study_id,
        "subject_id": record.subject_id,
        "site": record.site,
        "images": {m: str(p) for m, p in record.images.items()},
        "channels": dict(record.channels),
        "label": None if record.label is None else str(record.label),
        "label_map": None if record.label_map is None
        else {str(k): v for k, v in record.label_map.items()},
        "grid_reference": record.grid_reference,
        "meta": dict(record.meta),
    }


def record_from_json(raw: Mapping[str, Any]) -> StudyRecord:
    """Inverse of :func:`record_to_json`.

    Raises:
        ValueError: a required key is missing or has the wrong type.
    """
    try:
        label_map = raw.get("label_map")
        return StudyRecord(
            study_id=str(raw["study_id"]),
            images={str(m): Path(p) for m, p in raw["images"].items()},
            label=None if raw.get("label") is None else Path(raw["label"]),
            meta={str(k): str(v) for k, v in (raw.get("meta") or {}).items()},
            site=None if raw.get("site") is None else str(raw["site"]),
            subject_id=None if raw.get("subject_id") is None else str(raw["subject_id"]),
            channels={str(m): int(c) for m, c in (raw.get("channels") or {}).items()},
            label_map=None if label_map is None else {int(k): int(v) for k, v in label_map.items()},
            grid_reference=raw.get("grid_reference"),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ValueError(
            f"expected a study record with study_id and images, got {dict(raw)!r} ({err})."
        ) from err


def write_study_list(
    path: Path, records: Iterable[StudyRecord], *, layout: str, site: str | None = None
) -> Path:
    """Write ``records`` to ``path`` (a ``fedmm-studies.json`` in a site folder)."""
    payload = {
        "schema": _SCHEMA,
        "layout": layout,
        "site": site,
        "studies": [record_to_json(r) for r in records],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1))
    return path


def read_study_list(path: Path) -> Discovery:
    """Read a study list; a damaged entry is reported as a problem, the rest are kept.

    Raises:
        ValueError: the file is not a fedmm study list at all.
    """
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(
            f"Expected a JSON study list at {path}, got an unreadable file ({err}). Fix: rerun "
            f"`simulate` (it rewrites the list) or remove {path.name} to discover the folder."
        ) from err
    if not isinstance(raw, dict) or raw.get("schema") != _SCHEMA:
        got = raw.get("schema") if isinstance(raw, dict) else type(raw).__name__
        raise ValueError(
            f"Expected a study list with schema {_SCHEMA!r} at {path}, got {got!r}. Fix: rerun "
            f"`simulate` or remove {path.name} to discover the folder with data.layout."
        )
    studies: list[StudyRecord] = []
    problems: list[DataProblem] = []
    for index, entry in enumerate(raw.get("studies", [])):
        try:
            studies.append(record_from_json(entry))
        except ValueError as err:
            problems.append(DataProblem(
                path=Path(path), problem=f"study #{index}: {err}",
                fix="rerun `simulate` to rewrite the study list.",
            ))
    if not studies:
        raise ValueError(
            f"Expected at least one study in {path}, got none. Fix: rerun `simulate`, or "
            f"remove {path.name} to discover the folder with data.layout."
        )
    return Discovery(studies=tuple(studies), problems=tuple(problems))


def discover_site(data_dir: Path, *, layout: str) -> Discovery:
    """A site's studies: its ``fedmm-studies.json`` if it has one, else ``layout``'s discovery.

    Raises:
        ValueError: nothing usable in the folder (the adapter's message says what to fix).
    """
    data_dir = Path(data_dir)
    listed = data_dir / STUDY_LIST_FILE
    if listed.is_file():
        return read_study_list(listed)
    return get_adapter(layout).discover(data_dir)
