"""A site's privacy ledger: every statistics release it ever made, with its epsilon.

Append-only JSON lines in the site's state folder (``privacy_ledger.jsonl``, 0600). The
site's lifetime budget (``[limits].max_epsilon_total``) is checked against the sum of
what the ledger lists before any new release is drawn; a release re-sent unchanged costs
nothing and is not listed again. A line that cannot be read is counted as the largest
epsilon any readable line spent (never as nothing), so a damaged ledger cannot hide spent
budget.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path

LEDGER_FILE = "privacy_ledger.jsonl"


@dataclass(frozen=True)
class LedgerEntry:
    """One release: when, which mechanism, its epsilon and the fingerprint of what it covered."""

    time: str
    mechanism: str
    epsilon: float
    fingerprint: str


def read_ledger(state_dir: Path) -> tuple[list[LedgerEntry], int]:
    """The readable entries and the number of unreadable lines."""
    path = state_dir / LEDGER_FILE
    if not path.exists():
        return [], 0
    entries, bad = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
            entries.append(LedgerEntry(time=str(doc["time"]), mechanism=str(doc["mechanism"]),
                                       epsilon=float(doc["epsilon"]),
                                       fingerprint=str(doc["fingerprint"])))
        except (ValueError, KeyError, TypeError):
            bad += 1
    return entries, bad


def spent_epsilon(state_dir: Path, *, unreadable_cost: float) -> float:
    """Epsilon spent so far; each unreadable line counts as ``unreadable_cost`` or more."""
    entries, bad = read_ledger(state_dir)
    worst = max([e.epsilon for e in entries] + [unreadable_cost])
    return sum(e.epsilon for e in entries) + bad * worst


def record_release(state_dir: Path, *, epsilon: float, mechanism: str, fingerprint: str) -> LedgerEntry:
    """Append one release (flushed to disk before the release may leave the site)."""
    entry = LedgerEntry(time=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                        mechanism=mechanism, epsilon=float(epsilon), fingerprint=fingerprint)
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / LEDGER_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry.__dict__, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return entry
