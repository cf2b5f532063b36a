"""timings.json: how long each phase of a run took (data preparation, federation, report)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)

TIMINGS_FILE = "timings.json"


def write_timings(out_dir: Path, phases: Mapping[str, float]) -> Path:
    """Write ``<out_dir>/timings.json``: seconds per phase, in the order given, and their sum.

    Args:
        out_dir: the run's output folder.
        phases: phase name -> wall-clock seconds, e.g. ``{"data_preparation": 3.1}``.

    Returns:
        The path written.
    """
    bad = {k: v for k, v in phases.items() if not isinstance(v, int | float) or v < 0}
    if bad:
        raise ValueError(f"expected non-negative seconds for every phase, got {bad}")
    seconds = {str(k): round(float(v), 3) for k, v in phases.items()}
    doc = {"unit": "s", "phases": seconds, "total": round(sum(seconds.values()), 3)}
    path = Path(out_dir) / TIMINGS_FILE
    path.write_text(json.dumps(doc, indent=2))
    return path


def read_timings(run_dir: Path) -> dict[str, float] | None:
    """Phase name -> seconds from ``<run_dir>/timings.json``; None when absent or unreadable."""
    path = Path(run_dir) / TIMINGS_FILE
    if not path.is_file():
        return None
    try:
        phases = json.loads(path.read_text())["phases"]
        return {str(k): float(v) for k, v in phases.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        log.warning("Ignoring %s: %s", path, err)
        return None
