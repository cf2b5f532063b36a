"""metrics.json: per round and per site, what was trained, evaluated, timed and transferred."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from server.atomic_files import write_atomic
from server.tracking import RunTracker

METRICS_FILE = "metrics.json"


def _finite(value: Any) -> Any:
    """Replace NaN/inf (JSON has none) by null, recursively: a site that could not
    evaluate reports null rather than an invalid file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class MetricsLog:
    """An append-only list of round entries, rewritten atomically after each round.

    Args:
        out_dir: the run folder.
        keep_until_round: resuming: keep the entries of rounds up to this one.
        tracker: also sends every entry written here to TensorBoard / MLflow.
    """

    def __init__(self, out_dir: Path, *, keep_until_round: int | None = None,
                 tracker: RunTracker | None = None) -> None:
        self.path = out_dir / METRICS_FILE
        self.tracker = tracker
        self.meta: dict[str, Any] = {}
        self.rounds: list[dict[str, Any]] = []
        if keep_until_round is not None and self.path.exists():
            # Resuming: keep what finished, drop entries of a round that never completed.
            old = json.loads(self.path.read_text())
            self.meta = old.get("meta", {})
            self.rounds = [r for r in old.get("rounds", []) if r["round"] <= keep_until_round]

    def set_meta(self, **meta: Any) -> None:
        self.meta.update(meta)
        self.flush()
        if self.tracker is not None:
            self.tracker.log_meta(self.meta)

    def record_round(self, entry: dict[str, Any]) -> None:
        self.rounds = [r for r in self.rounds if r["round"] != entry["round"]]
        self.rounds.append(entry)
        self.rounds.sort(key=lambda r: r["round"])
        self.flush()
        if self.tracker is not None:
            self.tracker.log_round(_finite(entry))

    def flush(self) -> None:
        doc = _finite({"meta": self.meta, "rounds": self.rounds})
        write_atomic(self.path, json.dumps(doc, indent=2, allow_nan=False).encode())

    def close(self) -> None:
        """Close the trackers (the file itself is always complete)."""
        if self.tracker is not None:
            self.tracker.close()

    def latest(self, key: str) -> float | None:
        """The last round's aggregated value of ``train``/``evaluate`` loss."""
        for entry in reversed(self.rounds):
            value = entry.get(key, {}).get("loss")
            if value is not None:
                return float(value)
        return None
