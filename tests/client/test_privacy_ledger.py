"""The privacy ledger: append-only, fsynced, damage never hides spent budget, one writer."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np

from client.patient_contributions import ModalityColumns
from client.privacy import draw_release, plan_release
from client.privacy_ledger import (
    LEDGER_FILE,
    LedgerEntry,
    append_entry,
    ledger_lock,
    new_entry,
    read_ledger,
    spent_epsilon,
)


def entry(epsilon: float, fingerprint: str) -> LedgerEntry:
    plan = plan_release(modalities=("t1",), bins=4, epsilon=epsilon)
    cols = {"t1": ModalityColumns(np.full(9, 0.4), np.full(9, 0.1), np.full((9, 4), 0.25))}
    return new_entry(draw=draw_release(cols, plan), fingerprint=fingerprint,
                     covers={"modalities": ["t1"], "unit": "patient"})


def test_entries_round_trip_with_their_draw(tmp_path: Path) -> None:
    written = append_entry(tmp_path, entry(2.0, "a"))
    state = read_ledger(tmp_path)
    assert state.entries == (written,) and state.unreadable == 0
    assert state.find("a") == written and state.find("b") is None
    assert (tmp_path / LEDGER_FILE).stat().st_mode & 0o777 == 0o600


def test_appending_never_rewrites_earlier_lines(tmp_path: Path) -> None:
    append_entry(tmp_path, entry(2.0, "a"))
    before = (tmp_path / LEDGER_FILE).read_bytes()
    append_entry(tmp_path, entry(1.0, "b"))
    after = (tmp_path / LEDGER_FILE).read_bytes()
    assert after.startswith(before) and after.count(b"\n") == 2
    assert spent_epsilon(tmp_path, unreadable_cost=0.5) == 3.0


def test_damaged_lines_count_as_the_largest_spend_and_are_not_resent(tmp_path: Path) -> None:
    append_entry(tmp_path, entry(3.0, "a"))
    good = json.loads((tmp_path / LEDGER_FILE).read_text())
    with (tmp_path / LEDGER_FILE).open("a") as fh:
        fh.write("{torn line\n")
        fh.write(json.dumps({**good, "epsilon": float("nan")}) + "\n")   # not finite
        fh.write(json.dumps({**good, "fingerprint": "b", "epsilon": 0.1}) + "\n")  # != its draw
    state = read_ledger(tmp_path)
    assert len(state.entries) == 1 and state.unreadable == 3
    assert state.spent(unreadable_cost=1.0) == 12.0  # 3 + 3 x max(3, 1)
    assert state.spent(unreadable_cost=5.0) == 18.0
    assert state.find("b") is None


def test_a_line_from_before_draws_were_kept_counts_but_is_not_resent(tmp_path: Path) -> None:
    (tmp_path / LEDGER_FILE).write_text(json.dumps(
        {"time": "2026-11-30T10:00:00+00:00", "mechanism": "laplace", "epsilon": 8.0,
         "fingerprint": "old"}) + "\n")
    state = read_ledger(tmp_path)
    assert [e.epsilon for e in state.entries] == [8.0] and state.find("old") is None
    assert state.spent(unreadable_cost=1.0) == 8.0


def test_the_lock_lets_one_writer_in_at_a_time(tmp_path: Path) -> None:
    order: list[str] = []

    def second() -> None:
        with ledger_lock(tmp_path):
            order.append("second")

    with ledger_lock(tmp_path):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)
        order.append("first done")
    thread.join(timeout=5)
    assert order == ["first done", "second"]
