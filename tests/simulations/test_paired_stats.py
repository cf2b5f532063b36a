"""Paired differences: standard errors, t-intervals and the quality benchmark's goal checks."""

from __future__ import annotations

import pytest

from simulations.paired_stats import ci95, goals, standard_error, summary


def paired(**comparisons: list[float]) -> dict:
    return {"in_federation": {"0.1": {k: summary(v) for k, v in comparisons.items()}}}


def test_the_interval_is_students_t_at_the_level_of_the_differences() -> None:
    assert ci95([1.0]) is None and ci95([]) is None
    assert standard_error([1.0]) == 0.0
    assert abs(standard_error([1.0, 3.0, 5.0, 7.0]) - (20 / 3) ** 0.5 / 2) < 1e-12
    low, high = ci95([1.0, 2.0, 3.0, 4.0, 5.0])              # mean 3, sd 1.5811, t(0.975, 4) 2.7764
    assert low == pytest.approx(3 - 2.776445 * 1.581139 / 5 ** 0.5, abs=1e-5)
    assert high == pytest.approx(3 + 2.776445 * 1.581139 / 5 ** 0.5, abs=1e-5)


def test_a_summary_keeps_every_seed_with_its_mean_and_interval() -> None:
    s = summary([4.0, 6.0])
    assert s["per_seed"] == [4.0, 6.0] and s["mean"] == 5.0
    low, high = s["ci95"]                                     # t(0.975, 1) = 12.706
    assert abs(low - (5 - 12.706204736)) < 1e-6 and abs(high - (5 + 12.706204736)) < 1e-6
    assert summary([1.0])["ci95"] is None and summary([])["mean"] is None


def test_goals_need_the_interval_above_zero_and_three_points() -> None:
    strong = [4.0, 5.0, 6.0, 5.0, 4.5]
    g = goals(paired(federated_minus_scratch=strong, federated_minus_local_only=strong),
              fraction="0.1")
    assert g["federated_beats_scratch"] and g["federated_beats_local_only"] and g["all_goals_hold"]
    assert g["reaches_90pct_of_centralized_gain"] == "not run"
    small = [1.0, 1.5, 2.0, 1.2, 1.8]                          # above 0, mean below 3 points
    g = goals(paired(federated_minus_scratch=small, federated_minus_local_only=small), fraction="0.1")
    assert not g["federated_beats_scratch"] and g["federated_beats_local_only"]
    noisy = [12.0, -6.0, 9.0, -2.0, 8.0]                       # mean 4.2 but the interval spans 0
    g = goals(paired(federated_minus_scratch=noisy, federated_minus_local_only=strong), fraction="0.1")
    assert not g["federated_beats_scratch"] and not g["all_goals_hold"]
    nothing = goals({}, fraction="0.1")
    assert nothing["all_goals_hold"] is False
    assert nothing["federated_beats_scratch"] == nothing["federated_beats_local_only"] == "not run"
    only_local = goals(paired(federated_minus_local_only=small), fraction="0.1")
    assert only_local["federated_beats_local_only"] is True and only_local["all_goals_hold"] is False


def test_the_centralized_comparison_is_evaluated_only_when_centralized_gains() -> None:
    fed = [4.0, 6.0, 5.0]
    # a centralized run that gains nothing cannot make federated "reach 90 % of its gain"
    g = goals(paired(federated_minus_scratch=fed, centralized_minus_scratch=[-2.0, 0.0, -1.0]),
              fraction="0.1")
    assert g["reaches_90pct_of_centralized_gain"] == "not evaluable"
    g = goals(paired(federated_minus_scratch=fed, centralized_minus_scratch=[-3.0, 7.0, 17.0]),
              fraction="0.1")
    assert g["reaches_90pct_of_centralized_gain"] == "not evaluable"  # interval spans 0
    g = goals(paired(federated_minus_scratch=fed, centralized_minus_scratch=[6.0, 7.0, 8.0]),
              fraction="0.1")
    assert g["reaches_90pct_of_centralized_gain"] is False  # 5 < 0.9 x 7, interval above 0
    g = goals(paired(federated_minus_scratch=fed, centralized_minus_scratch=[5.0, 5.5, 6.0]),
              fraction="0.1")
    assert g["reaches_90pct_of_centralized_gain"] is True    # 5 >= 0.9 x 5.5
