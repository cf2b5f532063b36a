"""Paired differences: standard errors, t-intervals and the quality benchmark's goal checks."""

from __future__ import annotations

import pytest

from simulations.paired_stats import ci95, goals, standard_error


def test_standard_error_and_goals_read_the_paired_differences() -> None:
    assert standard_error([1.0]) == 0.0
    assert abs(standard_error([1.0, 3.0, 5.0, 7.0]) - (20 / 3) ** 0.5 / 2) < 1e-12
    row = {"scratch": 0.40, "local_only": 0.41, "federated": 0.45, "centralized": 0.39}
    results = {"0.1": {v: {"dice_mean": d} for v, d in row.items()}}
    g = goals(results, "0.1", {"federated": [4.0, 6.0], "centralized": [-2.0, 0.0]})
    assert g["share_of_centralized_gain"] is None           # centralized gained nothing
    # a centralized run that gains nothing cannot make federated "reach 90 % of its gain"
    assert g["reaches_90pct_of_centralized_gain"] == "not evaluable"
    assert g["paired_standard_error_points"] == {"federated": 1.0, "centralized": 1.0}
    low, high = g["paired_ci95_points"]["federated"]        # t(0.975, 1) = 12.706
    assert abs(low - (5 - 12.706204736)) < 1e-6 and abs(high - (5 + 12.706204736)) < 1e-6
    results["0.1"]["centralized"]["dice_mean"] = 0.47       # centralized gains 7, federated 5
    g = goals(results, "0.1", {"centralized": [6.0, 7.0, 8.0]})
    assert abs(g["share_of_centralized_gain"] - 5 / 7) < 1e-9
    assert g["reaches_90pct_of_centralized_gain"] is False  # its interval is above 0: evaluated
    g = goals(results, "0.1", {"centralized": [-3.0, 7.0, 17.0]})
    assert g["reaches_90pct_of_centralized_gain"] == "not evaluable"  # interval spans 0
    assert goals(results, "0.1")["reaches_90pct_of_centralized_gain"] == "not evaluable"


def test_the_interval_is_students_t_at_the_level_of_the_differences() -> None:
    assert ci95([1.0]) is None and ci95([]) is None
    low, high = ci95([1.0, 2.0, 3.0, 4.0, 5.0])              # mean 3, sd 1.5811, t(0.975, 4) 2.7764
    assert low == pytest.approx(3 - 2.776445 * 1.581139 / 5 ** 0.5, abs=1e-5)
    assert high == pytest.approx(3 + 2.776445 * 1.581139 / 5 ** 0.5, abs=1e-5)


def test_goals_need_every_core_variant() -> None:
    assert goals({"0.1": {"scratch": {"dice_mean": 0.4}}}, "0.1") == {}
