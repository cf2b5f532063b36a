"""Paired differences between benchmark variants: standard errors, t-intervals, goal checks.

The quality benchmark (``benchmarks/quality.py``) fine-tunes every variant on the same
labelled draws, so a variant is judged by its per-draw differences against a reference
(scratch, or local_only), in Dice points. This module holds that arithmetic, apart from
the orchestration, so that it is tested on its own. The intervals are Student-t intervals
at the level of the differences given: they are only as honest as those differences are
independent (draws that share one pretraining are not).
"""

from __future__ import annotations

import statistics
from typing import Any

__all__ = ["ci95", "goals", "standard_error"]


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


def goals(results: dict[str, dict[str, dict[str, float]]], fraction: str,
          paired: dict[str, list[float]] | None = None) -> dict[str, Any]:
    """The issue's goals at the low label fraction, as measured (not asserted).

    "Reaches 90 % of centralized's gain" (federated's gain >= 0.9 x centralized's) is
    evaluated only when centralized's own gain over scratch is shown, i.e. the 95 %
    t-interval of its paired differences (``paired["centralized"]``) lies above 0;
    otherwise it is "not evaluable" (a centralized run that gains nothing says nothing
    about federated's share of a gain). ``share_of_centralized_gain`` is null where
    centralized gains nothing. With ``paired`` differences against scratch, each variant's
    gain also gets its standard error and interval (over the pairs given, which share a
    seed's pretraining when there are several labelled draws per seed).
    """
    row = results.get(fraction, {})
    try:
        s, lo, f, c = (row[v]["dice_mean"] for v in ("scratch", "local_only", "federated", "centralized"))
    except KeyError:
        return {}
    gain_c = c - s
    interval_c = ci95((paired or {}).get("centralized", []))
    evaluable = interval_c is not None and interval_c[0] > 0
    out: dict[str, Any] = {
        "label_fraction": float(fraction),
        "federated_minus_scratch_dice_points": 100 * (f - s),
        "centralized_minus_scratch_dice_points": 100 * gain_c,
        "federated_beats_scratch_by_3_points": 100 * (f - s) >= 3,
        "federated_beats_local_only": f > lo,
        "share_of_centralized_gain": (f - s) / gain_c if gain_c > 0 else None,
        "reaches_90pct_of_centralized_gain": ((f - s) >= 0.9 * gain_c if evaluable
                                              else "not evaluable")}
    if paired:
        out["paired_standard_error_points"] = {v: standard_error(d) for v, d in paired.items()}
        out["paired_ci95_points"] = {v: ci95(d) for v, d in paired.items()}
    return out
