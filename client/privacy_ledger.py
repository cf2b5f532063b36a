"""A site's privacy ledger: every statistics release it ever drew, with its noisy draw.

Append-only JSON lines in the site's state folder (``privacy_ledger.jsonl``, 0600). Each
line is one fresh release: when, the mechanism, its epsilon, what it covered (settings,
modalities, fields and each field's epsilon) and the draw itself (noisy counts and sums).
A later request for the same data and statistical settings is answered from its line
(post-processed again, so another k costs nothing) and is never drawn anew; the lifetime
budget (``[limits].max_epsilon_total``) is checked against the sum of every line before a
new draw, and the new line is flushed to disk before the release can leave the site.

A line that cannot be read (a torn write, an edit) is counted as at least the largest
epsilon any readable line spent, never as nothing, and its draw is not reused. The whole
read-check-draw-append sequence holds an exclusive lock, so two requests at once cannot
both draw.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from client.privacy import ReleaseDraw

LEDGER_FILE = "privacy_ledger.jsonl"
_LOCK_FILE = "privacy_ledger.lock"
LEDGER_VERSION = 2


@dataclass(frozen=True)
class LedgerEntry:
    """One fresh release.

    Attributes:
        time: when it was drawn (UTC, ISO 8601).
        mechanism: how (client/dp_mechanisms.py::MECHANISM).
        epsilon: what it cost (pure DP, one patient).
        fingerprint: the data and statistical settings it covered (a digest).
        covers: the settings, modalities, fields and per-field epsilons, for people.
        draw: the noisy measurements; None for a line from before draws were kept.
    """

    time: str
    mechanism: str
    epsilon: float
    fingerprint: str
    covers: Mapping[str, Any] = field(default_factory=dict)
    draw: ReleaseDraw | None = None

    def to_json(self) -> str:
        doc = {"version": LEDGER_VERSION, "time": self.time, "mechanism": self.mechanism,
               "epsilon": self.epsilon, "fingerprint": self.fingerprint,
               "covers": dict(self.covers),
               "draw": None if self.draw is None else self.draw.model_dump(mode="json")}
        return json.dumps(doc, sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, line: str) -> LedgerEntry:
        """Parse one line.

        Raises:
            ValueError: not a ledger line, or an epsilon that is not finite and positive.
        """
        doc = json.loads(line)
        if not isinstance(doc, dict):
            raise ValueError(f"expected a JSON object, got {type(doc).__name__}")
        try:
            epsilon = float(doc["epsilon"])
            draw = None if doc.get("draw") is None else ReleaseDraw.model_validate(doc["draw"])
            entry = cls(time=str(doc["time"]), mechanism=str(doc["mechanism"]), epsilon=epsilon,
                        fingerprint=str(doc["fingerprint"]), covers=dict(doc.get("covers") or {}),
                        draw=draw)
        except (KeyError, TypeError, ValidationError) as err:
            raise ValueError(f"not a ledger line: {err}") from err
        if not (0 < epsilon < float("inf")):
            raise ValueError(f"expected a finite, positive epsilon, got {epsilon}")
        if draw is not None and draw.epsilon != epsilon:
            raise ValueError(f"the line's epsilon {epsilon} differs from its draw's {draw.epsilon}")
        return entry


@dataclass(frozen=True)
class LedgerState:
    """What the ledger holds now: readable entries and the count of unreadable lines."""

    entries: tuple[LedgerEntry, ...]
    unreadable: int

    def spent(self, *, unreadable_cost: float) -> float:
        """Epsilon spent so far; an unreadable line counts as the largest of
        ``unreadable_cost`` and every readable line's epsilon."""
        worst = max([e.epsilon for e in self.entries] + [unreadable_cost])
        return sum(e.epsilon for e in self.entries) + self.unreadable * worst

    def find(self, fingerprint: str) -> LedgerEntry | None:
        """The first release with this fingerprint whose draw is kept (None: draw anew)."""
        return next((e for e in self.entries if e.fingerprint == fingerprint and e.draw), None)


def read_ledger(state_dir: Path) -> LedgerState:
    """Every line of the site's ledger (an absent ledger is an empty one)."""
    path = state_dir / LEDGER_FILE
    if not path.exists():
        return LedgerState(entries=(), unreadable=0)
    entries, bad = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            entries.append(LedgerEntry.from_json(line))
        except ValueError:
            bad += 1
    return LedgerState(entries=tuple(entries), unreadable=bad)


def spent_epsilon(state_dir: Path, *, unreadable_cost: float) -> float:
    """Epsilon spent so far (see :meth:`LedgerState.spent`)."""
    return read_ledger(state_dir).spent(unreadable_cost=unreadable_cost)


def new_entry(*, draw: ReleaseDraw, fingerprint: str, covers: Mapping[str, Any]) -> LedgerEntry:
    """The line of a fresh draw, stamped now."""
    return LedgerEntry(time=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                       mechanism=draw.mechanism, epsilon=draw.epsilon, fingerprint=fingerprint,
                       covers=dict(covers), draw=draw)


def append_entry(state_dir: Path, entry: LedgerEntry) -> LedgerEntry:
    """Append one line and flush it to disk (before the release may leave the site)."""
    line = entry.to_json() + "\n"
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / LEDGER_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())
    return entry


@contextmanager
def ledger_lock(state_dir: Path) -> Iterator[None]:
    """Hold the site's ledger exclusively (other processes of this site wait)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
