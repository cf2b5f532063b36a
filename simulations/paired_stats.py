"""Paired differences between benchmark variants: standard errors, t-intervals, goal checks.

The quality benchmark (``benchmarks/quality.py``) fine-tunes every variant of a seed on
the same labelled draw, so a variant is judged by its per-seed differences against a
reference (scratch, or local_only), in Dice points. This module holds that arithmetic,
apart from the orchestration, so that it is tested on its own. The intervals are
Student-t intervals at the level of the differences given: seeds, each a fresh pretraining
and a fresh labelled draw (docs/benchmark-protocol.md), so the differences are independent.
"""

from __future__ import annotations

import statistics
from typing import Any

__all__ = ["above_zero", "ci95", "goals", "standard_error", "summary"]


def standard_error(diffs: list[float]) -> float:
    """The standard error of the mean of paired differences (0 for fewer than two)."""
    return statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else 0.0


def ci95(diffs: list[float]) -> tuple[float, float] | None:
    """The 95 % t-interval of the mean of paired differences (None for fewer than two)."""
    from scipy import stats  # Student's t quantile

    if len(diffs) < 2:
        return None
    mean, se = statistics.fmean(diffs), standard_error(diffs)
    half = float(stats.t.ppf(0.975, df=len(diffs) - 1)) * se
    return mean - half, mean + half


def summary(per_seed: list[float]) -> dict[str, Any]:
    """One paired difference as the results report it: ``per_seed`` values, their ``mean``
    and ``ci95`` ([low, high], or None for fewer than two seeds)."""
    interval = ci95(per_seed)
    return {"per_seed": per_seed, "mean": statistics.fmean(per_seed) if per_seed else None,
            "ci95": list(interval) if interval else None}


def above_zero(diff: dict[str, Any] | None) -> bool:
    """Whether a difference's 95 % interval lies above 0."""
    return bool(diff and diff["ci95"] and diff["ci95"][0] > 0)


#: The protocol's goals (docs/benchmark-protocol.md), in words.
GOAL_RULES = {
    "federated_beats_scratch": "federated_minus_scratch: 95 % interval above 0 and mean >= 3 "
                               "Dice points",
    "federated_beats_local_only": "federated_minus_local_only: 95 % interval above 0",
}
MIN_GAIN_POINTS = 3.0


def goals(paired: dict[str, dict[str, dict[str, Any]]], *, fraction: str,
          setting: str = "in_federation") -> dict[str, Any]:
    """The protocol's goals, as measured (not asserted), from the seed-level paired
    differences ``paired[setting][fraction][comparison]`` (each a :func:`summary`).

    "Reaches 90 % of centralized's gain" (federated's mean gain >= 0.9 x centralized's) is
    evaluated only when centralized's own interval over scratch lies above 0; otherwise it
    is "not evaluable" (a centralized run that gains nothing says nothing about federated's
    share of a gain), and "not run" without centralized.
    """
    row = paired.get(setting, {}).get(fraction, {})
    fs, fl = row.get("federated_minus_scratch"), row.get("federated_minus_local_only")
    cs = row.get("centralized_minus_scratch")
    # A comparison whose variants were not run is "not run", never False.
    beats_scratch: Any = "not run" if fs is None else above_zero(fs) and fs["mean"] >= MIN_GAIN_POINTS
    beats_local: Any = "not run" if fl is None else above_zero(fl)
    if cs is None or fs is None:
        share: Any = "not run"
    elif above_zero(cs):
        share = fs["mean"] >= 0.9 * cs["mean"]
    else:
        share = "not evaluable"
    return {"setting": setting, "label_fraction": float(fraction),
            "federated_beats_scratch": beats_scratch,
            "federated_beats_local_only": beats_local,
            "all_goals_hold": beats_scratch is True and beats_local is True,
            "rules": GOAL_RULES,
            "reaches_90pct_of_centralized_gain": share}
