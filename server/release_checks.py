"""The server's checks on statistics: each site's release before pooling, the pool before sending it.

A registered site can send any text as its release. One NaN that reached the pool used to
stop every run (it serialized as ``null``, and every site then failed to decode every
round's config), so a release enters the pool only when it

* is JSON without NaN or infinity, and validates as a ``SiteStats``
  (``shared/stats_schema.py``, which refuses NaN and infinity too);
* covers only modalities the run asked for, each histogram with ``data.hist_bins`` bins,
  and every number in it is finite;
* survives a serialize-and-parse round trip unchanged.

A release that fails is dropped with a reason that names the check and the field, never a
value or a key the site chose. The pool is round-tripped before it is sent, and a
checkpointed pool is re-validated on ``--resume`` (:func:`restore_pool`).
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from pydantic import ValidationError

from shared.config import RunConfig
from shared.modalities import CANONICAL_MODALITIES
from shared.stats_schema import STATS_POOL_SCHEMA, ModalityStats, SiteStats, StatsPool

log = logging.getLogger("flwr.fedmm.server")

#: Names that may appear in a reason: the schema's field names and canonical modalities.
_NAMES = frozenset({*SiteStats.model_fields, *ModalityStats.model_fields, *StatsPool.model_fields,
                    *CANONICAL_MODALITIES})


class ReleaseRejected(ValueError):
    """A statistics release the server drops; the message is the reason (no site values)."""


def _refuse_constant(name: str) -> Any:
    raise ReleaseRejected(f"the release holds {name}, which JSON does not allow")


def _where(loc: tuple[Any, ...]) -> str:
    """A validation error's location with any key the site chose replaced by ``?``."""
    return ".".join(str(p) if isinstance(p, int) or p in _NAMES else "?" for p in loc) or "release"


def _summary(err: ValidationError) -> str:
    """Where and which rule failed, for at most three problems (never the input)."""
    parts = [f"{_where(tuple(e['loc']))} ({e['type']})" for e in err.errors()[:3]]
    more = f" and {err.error_count() - 3} more" if err.error_count() > 3 else ""
    return ", ".join(parts) + more


def _non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_non_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_non_finite(v) for v in value)
    return False


def entry_problem(stats: ModalityStats, *, hist_bins: int | None = None) -> str:
    """What is wrong with one modality's statistics ("" when nothing)."""
    if _non_finite(stats.model_dump()):
        return "a value is NaN or infinite"
    if hist_bins is not None and len(stats.histogram) != hist_bins:
        return f"its histogram has {len(stats.histogram)} bins, expected {hist_bins} (data.hist_bins)"
    return ""


def parse_release(text: object, cfg: RunConfig) -> SiteStats:
    """The validated release in ``text``.

    Raises:
        ReleaseRejected: with the reason the release is dropped.
    """
    if not isinstance(text, str):
        raise ReleaseRejected(f"expected the release as JSON text, got a {type(text).__name__}")
    try:
        raw = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as err:
        raise ReleaseRejected(f"the release is not valid JSON (line {err.lineno})") from err
    try:
        release = SiteStats.model_validate(raw)
    except ValidationError as err:
        raise ReleaseRejected(f"not a valid SiteStats: {_summary(err)}") from err
    unasked = [m for m in release.modalities if m not in cfg.data.modalities]
    if unasked:
        raise ReleaseRejected(f"it covers modalities the run did not ask for ({sorted(unasked)}; "
                              f"data.modalities is {list(cfg.data.modalities)})")
    for name, stats in release.modalities.items():
        problem = entry_problem(stats, hist_bins=cfg.data.hist_bins)
        if problem:
            raise ReleaseRejected(f"modality {name!r}: {problem}")
    if _non_finite(release.model_dump()):
        raise ReleaseRejected("a value is NaN or infinite")
    if SiteStats.from_json(release.to_json()) != release:
        raise ReleaseRejected("it does not survive a serialize-and-parse round trip unchanged")
    return release


def round_trip_pool(pool: StatsPool) -> StatsPool:
    """``pool`` after checking that what the sites will decode equals it.

    Raises:
        ValueError: the pool does not survive the round trip (a fedmm bug: every release
            in it was checked).
    """
    try:
        again = StatsPool.from_json(pool.to_json())
    except ValidationError as err:
        raise ValueError(f"The statistics pool does not parse back after serializing "
                         f"({_summary(err)}); expected every pooled release to be valid.") from err
    if again != pool:
        raise ValueError("The statistics pool changes when serialized and parsed back; expected "
                         "an exact round trip.")
    return again


def restore_pool(raw: Any, *, source: str) -> StatsPool | None:
    """A checkpointed pool, validated again: entries that are not valid (e.g. a NaN that an
    older fedmm wrote as ``null``) are dropped with a warning; the rest is kept.

    Raises:
        ValueError: ``raw`` is not a statistics pool at all; says what to do.
    """
    if raw is None:
        return None
    fix = (" Fix: restore that file from a backup, or start a new run in a new output folder "
           "(sites re-send the statistics release they kept).")
    if not isinstance(raw, dict) or raw.get("schema_id") != STATS_POOL_SCHEMA:
        raise ValueError(f"Cannot resume: the statistics pool in {source} is not a "
                         f"{STATS_POOL_SCHEMA!r} object (got {type(raw).__name__} with schema "
                         f"{raw.get('schema_id') if isinstance(raw, dict) else None!r}).{fix}")
    modalities = raw.get("modalities") or {}
    kept: dict[str, list[ModalityStats]] = {}
    for name, entries in (modalities.items() if isinstance(modalities, dict) else []):
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            try:
                stats = ModalityStats.model_validate(entry)
            except ValidationError as err:
                log.warning("Resume: dropped pooled statistics %s[%d] from %s: %s", name, i,
                            source, _summary(err))
                continue
            problem = entry_problem(stats)
            if problem:
                log.warning("Resume: dropped pooled statistics %s[%d] from %s: %s", name, i,
                            source, problem)
                continue
            kept.setdefault(name, []).append(stats)
    try:
        return round_trip_pool(StatsPool.model_validate({**raw, "modalities": kept}))
    except ValidationError as err:
        raise ValueError(f"Cannot resume: the statistics pool in {source} is not valid "
                         f"({_summary(err)}).{fix}") from err
    except ValueError as err:
        raise ValueError(f"Cannot resume: {err}{fix}") from err
