"""The finished run a report is built from: its JSON records and files, each read leniently."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client.release import RELEASE_FILE
from server.checkpoints import CHECKPOINT_DIR, ENCODER_FILE, MODEL_CARD_FILE, STATE_FILE
from server.metrics_log import METRICS_FILE
from shared.stats_schema import ModalityStats, StatsPool
from simulations.report.timings import read_timings
from simulations.scenario import SCENARIO_FILE

log = logging.getLogger(__name__)

INITIAL_CHECKPOINT = "round_0000.safetensors"


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None (logged) when it is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        log.warning("Report: ignoring unreadable %s: %s", path, err)
        return None
    if not isinstance(data, dict):
        log.warning("Report: ignoring %s: expected a JSON object, got %s", path, type(data).__name__)
        return None
    return data


@dataclass(frozen=True)
class RunFolder:
    """What a run folder holds; every record is None when its file is missing or unreadable."""

    path: Path
    metrics: dict[str, Any] | None
    model_card: dict[str, Any] | None
    scenario: dict[str, Any] | None
    server_state: dict[str, Any] | None
    timings: dict[str, float] | None

    @classmethod
    def read(cls, path: Path) -> RunFolder:
        path = Path(path)
        return cls(
            path=path,
            metrics=read_json(path / METRICS_FILE),
            model_card=read_json(path / MODEL_CARD_FILE),
            scenario=read_json(path / SCENARIO_FILE),
            server_state=read_json(path / STATE_FILE),
            timings=read_timings(path),
        )

    @property
    def config(self) -> dict[str, Any] | None:
        """The validated RunConfig as the server saw it (model card, else server state, else
        metrics meta, else the scenario's run section)."""
        candidates = (
            (self.model_card or {}).get("config"),
            (self.server_state or {}).get("config"),
            ((self.metrics or {}).get("meta") or {}).get("config"),
            (self.scenario or {}).get("run"),
        )
        for cfg in candidates:
            if isinstance(cfg, dict):
                return cfg
        return None

    @property
    def preset(self) -> str | None:
        """The concrete encoder preset (never "auto") when the run recorded it."""
        for value in ((self.model_card or {}).get("preset"),
                      ((self.metrics or {}).get("meta") or {}).get("preset"),
                      ((self.config or {}).get("model") or {}).get("preset")):
            if isinstance(value, str) and value != "auto":
                return value
        return None

    @property
    def pool(self) -> StatsPool | None:
        """The server's statistics pool from ``server_state.json``."""
        raw = (self.server_state or {}).get("pool")
        return StatsPool.model_validate(raw) if raw is not None else None

    @property
    def initial_checkpoint(self) -> Path:
        """Round 0's global encoder entries (the initial weights)."""
        return self.path / CHECKPOINT_DIR / INITIAL_CHECKPOINT

    @property
    def encoder_file(self) -> Path:
        return self.path / ENCODER_FILE

    def site_state_dir(self, index: int) -> Path:
        """Where ``simulate`` kept virtual site ``index`` (shared/config.py::SimulatedSitesConfig)."""
        return self.path / "sites" / f"site-{index}"

    def released_stats(self, index: int) -> dict[str, ModalityStats]:
        """Virtual site ``index``'s released statistics per modality (empty if not kept)."""
        doc = read_json(self.site_state_dir(index) / RELEASE_FILE) or {}
        release = doc.get("release") or {}
        if release.get("withheld"):
            return {}
        try:
            return {m: ModalityStats.model_validate(s)
                    for m, s in (release.get("modalities") or {}).items()}
        except ValueError as err:
            log.warning("Report: ignoring site %d's released statistics: %s", index, err)
            return {}
