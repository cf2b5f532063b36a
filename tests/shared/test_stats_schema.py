"""SiteStats and StatsPool refuse NaN, infinities and inconsistent releases."""

from __future__ import annotations

import json
import math

import pytest
from pydantic import ValidationError

from shared.stats_schema import ModalityStats, SiteStats, StatsPool

H = (0.25, 0.25, 0.25, 0.25)
GOOD = {"withheld": False, "studies": "10-49", "epsilon": 2.0,
        "modalities": {"t1": {"mean": 0.4, "std": 0.1, "histogram": list(H)}}}


def with_value(path: tuple[str | int, ...], value: float) -> dict:
    doc = json.loads(json.dumps(GOOD))
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("path", [
    ("epsilon",), ("modalities", "t1", "mean"), ("modalities", "t1", "std"),
    ("modalities", "t1", "histogram", 1),
], ids=["epsilon", "mean", "std", "histogram"])
def test_a_non_finite_value_anywhere_fails_validation(path: tuple, value: float) -> None:
    SiteStats.model_validate(GOOD)  # the unchanged release is valid
    with pytest.raises(ValidationError):
        SiteStats.model_validate(with_value(path, value))


def test_a_non_finite_release_cannot_be_smuggled_through_json() -> None:
    text = SiteStats.model_validate(GOOD).to_json().replace('"mean":0.4', '"mean":NaN')
    assert "NaN" in text
    with pytest.raises(ValidationError):
        SiteStats.from_json(text)


def test_a_pool_with_a_non_finite_entry_fails_validation() -> None:
    entry = ModalityStats(mean=0.4, std=0.1, histogram=H).model_dump()
    StatsPool.model_validate({"modalities": {"t1": [entry]}, "contributors": 1})
    for key, bad in (("mean", math.nan), ("std", math.inf)):
        with pytest.raises(ValidationError):
            StatsPool.model_validate({"modalities": {"t1": [{**entry, key: bad}]}})
    with pytest.raises(ValidationError):
        StatsPool.model_validate({"release_epsilons": [2.0, math.nan]})
    with pytest.raises(ValidationError):
        StatsPool.model_validate({"release_epsilons": [0.0]})
    assert StatsPool(release_epsilons=(4.0, 2.0)).release_epsilons == (2.0, 4.0)


def test_a_release_is_withheld_exactly_when_it_carries_no_modality() -> None:
    SiteStats(withheld=True, studies="withheld", epsilon=1.0)
    with pytest.raises(ValidationError, match="at least one modality"):
        SiteStats(withheld=False, studies="<10", epsilon=1.0)
    with pytest.raises(ValidationError, match="withheld"):
        SiteStats.model_validate({**GOOD, "withheld": True})


def test_histograms_must_be_normalized_and_non_negative() -> None:
    for bad in ((0.5, 0.5, 0.5, 0.5), (1.5, -0.5, 0.0, 0.0)):
        with pytest.raises(ValidationError, match="sum to 1"):
            ModalityStats(mean=0.4, std=0.1, histogram=bad)


def test_schema_rejects_extra_fields() -> None:
    with pytest.raises(ValidationError):
        SiteStats.model_validate({"withheld": True, "studies": "withheld", "epsilon": 1.0,
                                  "site_name": "St Elsewhere"})
