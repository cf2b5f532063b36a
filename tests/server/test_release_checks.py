"""The server validates every statistics release before pooling, the pool before sending, and on resume."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from server.release_checks import ReleaseRejected, parse_release, restore_pool, round_trip_pool
from shared.config import RunConfig
from shared.stats_schema import ModalityStats, SiteStats, StatsPool

CFG = RunConfig.model_validate({"data": {"hist_bins": 4, "modalities": ["t1", "t2"]}})
HIST = [0.25, 0.25, 0.25, 0.25]


def release(**modalities: Any) -> dict[str, Any]:
    mods = modalities or {"t1": {"mean": 0.4, "std": 0.1, "histogram": HIST}}
    return {"schema_id": "fedmm.site-stats/1", "withheld": False, "studies": "10-49",
            "epsilon": 8.0, "modalities": mods}


def test_a_valid_release_is_parsed() -> None:
    parsed = parse_release(json.dumps(release()), CFG)
    assert isinstance(parsed, SiteStats) and parsed.modalities["t1"].mean == 0.4


@pytest.mark.parametrize(("text", "reason"), [
    (json.dumps(release(t1={"mean": 0.4, "std": 0.1, "histogram": [0.25, 0.25, 0.25, float("nan")]})),
     "holds NaN"),
    (json.dumps(release(t1={"mean": float("inf"), "std": 0.1, "histogram": HIST})), "holds Infinity"),
    (json.dumps(release(t1={"mean": 0.4, "std": 0.1, "histogram": [0.25, 0.25, 0.25, None]})),
     r"t1\.histogram\.3"),
    (json.dumps(release(t1={"mean": 0.4, "std": 0.1, "histogram": [0.125] * 8})),
     "8 bins, expected 4"),
    (json.dumps(release(flair={"mean": 0.4, "std": 0.1, "histogram": HIST})), "did not ask for"),
    ("{not json", "not valid JSON"),
    (None, "expected the release as JSON text"),
    (json.dumps({**release(), "site_name": "Hospital A"}), "not a valid SiteStats"),
], ids=["nan-histogram", "inf-mean", "null-histogram", "bins", "modality", "json", "none", "extra-field"])
def test_a_bad_release_is_dropped_with_a_reason(text: object, reason: str) -> None:
    with pytest.raises(ReleaseRejected, match=reason):
        parse_release(text, CFG)


def test_reasons_carry_no_key_or_value_a_site_chose() -> None:
    chosen = {"patient_john_doe": {"mean": 1.123456, "std": 0.1, "histogram": HIST}}
    with pytest.raises(ReleaseRejected) as err:
        parse_release(json.dumps(release(**chosen)), CFG)
    assert "john_doe" not in str(err.value) and "1.123456" not in str(err.value)
    assert "modalities.?.mean (less_than_equal)" in str(err.value)


def test_the_pool_round_trips() -> None:
    pool = StatsPool(modalities={"t1": (ModalityStats(mean=0.4, std=0.1, histogram=tuple(HIST)),)},
                     contributors=1)
    assert round_trip_pool(pool) == pool


def saved_pool(**entries: Any) -> dict[str, Any]:
    good = {"mean": 0.4, "std": 0.1, "histogram": HIST}
    return {"schema_id": "fedmm.stats-pool/1", "contributors": 2, "withheld": 0,
            "modalities": {"t1": [good, *entries.get("t1", [])], "t2": entries.get("t2", [good])}}


def test_resume_drops_invalid_pooled_entries_and_keeps_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    # What fedmm wrote for a NaN histogram value before releases were checked: null.
    bad = {"mean": 0.4, "std": 0.1, "histogram": [0.25, 0.25, 0.25, None]}
    with caplog.at_level(logging.WARNING, logger="flwr.fedmm.server"):
        pool = restore_pool(saved_pool(t1=[bad]), source="server_state.json")
    assert pool is not None and len(pool.targets("t1")) == 1 and len(pool.targets("t2")) == 1
    assert "dropped pooled statistics t1[1]" in caplog.text


def test_resume_without_a_pool_is_fine() -> None:
    assert restore_pool(None, source="x") is None


@pytest.mark.parametrize("raw", [[], {"schema_id": "something-else"}, {**saved_pool(), "contributors": -1}],
                         ids=["list", "schema", "field"])
def test_a_saved_pool_that_is_not_a_pool_is_an_error_saying_what_to_do(raw: Any) -> None:
    with pytest.raises(ValueError, match=r"Cannot resume.*Fix: restore that file from a backup"):
        restore_pool(raw, source="server_state.json")
