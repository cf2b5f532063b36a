"""The downstream fine-tuning results as a table (from quality.json's shape or a list of rows)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Column titles of metrics given as ``<name>_mean`` / ``<name>_std`` pairs.
_METRIC_TITLES = {"dice": "Dice", "acc": "accuracy", "balanced_acc": "balanced accuracy", "auc": "AUC"}
_FIRST = ("dice", "acc")


@dataclass(frozen=True)
class Table:
    """Cells as text; ``bold`` holds (row, column) of the cells to emphasize."""

    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    bold: frozenset[tuple[int, int]] = field(default_factory=frozenset)
    notes: tuple[str, ...] = ()


def format_value(value: Any) -> str:
    """A table cell: numbers with 4 significant digits, None as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}"


def _metric(value: Any) -> str:
    """A score in [0, 1] (Dice, accuracy, AUC) with three decimals, aligned in its column."""
    number = _number(value)
    return f"{number:.3f}" if number is not None else format_value(value)


def _fraction_label(key: str) -> str:
    try:
        f = float(key)
    except ValueError:
        return key
    return f"{100 * f:g} %" if 0 < f <= 1 else key


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _from_results(results: Mapping[str, Any], notes: tuple[str, ...]) -> Table:
    metrics: list[str] = []
    others: list[str] = []
    for variants in results.values():
        for values in (variants or {}).values():
            for key in values or {}:
                base = key[: -len("_mean")] if key.endswith("_mean") else None
                if base is not None and base not in metrics:
                    metrics.append(base)
                elif base is None and not key.endswith("_std") and key not in others:
                    others.append(key)
    seen = list(metrics)
    metrics.sort(key=lambda m: (_FIRST.index(m) if m in _FIRST else len(_FIRST), seen.index(m)))
    headers = ("labels", "variant", *(f"{_METRIC_TITLES.get(m, m)} (mean ± sd)" for m in metrics), *others)
    rows: list[tuple[str, ...]] = []
    bold: set[tuple[int, int]] = set()
    for fraction, variants in results.items():
        first_row = len(rows)
        for variant, values in (variants or {}).items():
            values = values or {}
            cells = [_fraction_label(str(fraction)), str(variant)]
            for m in metrics:
                mean, std = values.get(f"{m}_mean"), values.get(f"{m}_std")
                cells.append(_metric(mean) + ("" if std is None else f" ± {_metric(std)}"))
            cells += [format_value(values.get(k)) for k in others]
            rows.append(tuple(cells))
        # The best mean of each metric within a label fraction is set in bold.
        for col, m in enumerate(metrics, start=2):
            scored = [(_number((variants or {})[v].get(f"{m}_mean")), i)
                      for i, v in enumerate(variants or {}) if isinstance((variants or {})[v], Mapping)]
            scored = [(s, i) for s, i in scored if s is not None]
            if len(scored) > 1:
                bold.add((first_row + max(scored)[1], col))
    return Table(headers=headers, rows=tuple(rows), bold=frozenset(bold), notes=notes)


def _from_rows(rows: Sequence[Mapping[str, Any]]) -> Table:
    headers: list[str] = []
    for row in rows:
        headers += [str(k) for k in row if str(k) not in headers]
    cells = tuple(tuple(format_value(row.get(h)) for h in headers) for row in rows)
    return Table(headers=tuple(headers), rows=cells)


def downstream_table(downstream: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> Table:
    """Turn fine-tuning results into a table.

    Accepts ``{"<label_fraction>": {"<variant>": {"dice_mean": .., "dice_std": .., ...}}}``,
    the same wrapped as ``benchmarks/results/quality.json`` (``{"config", "machine",
    "results"}``), or a list of flat rows (one dict per row, columns in first-seen order).

    Raises:
        ValueError: the value has none of these shapes, or holds no result.
    """
    if isinstance(downstream, Mapping):
        notes: tuple[str, ...] = ()
        results: Any = downstream
        if isinstance(downstream.get("results"), Mapping):
            results = downstream["results"]
            if downstream.get("machine"):
                notes = (f"machine: {downstream['machine']}",)
        if not results or not all(isinstance(v, Mapping) and all(isinstance(m, Mapping) for m in v.values())
                                  for v in results.values()):
            raise ValueError("expected {'<label_fraction>': {'<variant>': {'dice_mean': ..., ...}}}, "
                             f"got keys {list(results)[:5]}")
        return _from_results(results, notes)
    if isinstance(downstream, Sequence) and not isinstance(downstream, str | bytes):
        if not downstream or not all(isinstance(r, Mapping) for r in downstream):
            raise ValueError("expected a non-empty list of dicts (one per table row), got "
                             f"{type(downstream).__name__} of {len(downstream)} item(s)")
        return _from_rows(downstream)
    raise ValueError(f"expected a dict of results or a list of row dicts, got {type(downstream).__name__}")
