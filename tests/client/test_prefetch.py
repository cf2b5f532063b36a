"""Inputs made one step ahead in a background thread: the same items, in order, with the
same random draws as the plain loop (client/prefetch.py, client/train.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from client.device import prefetch_ahead
from client.prefetch import prefetched
from client.site_state import STATE_FILE
from client.train import train_round
from shared.config import SiteConfig, TrainConfig
from tests.client.site_data import initial_arrays, round_config, write_site


def counter() -> tuple[list[int], Callable[[], int]]:
    calls: list[int] = []

    def make() -> int:
        calls.append(len(calls))
        return calls[-1]
    return calls, make


@pytest.mark.parametrize("ahead", [0, 1, 3])
def test_items_come_in_order_and_make_runs_exactly_count_times(ahead: int) -> None:
    calls, make = counter()
    assert list(prefetched(make, 5, ahead=ahead)) == [0, 1, 2, 3, 4]
    assert len(calls) == 5
    assert list(prefetched(make, 0, ahead=ahead)) == []


def test_the_next_item_is_made_while_the_current_one_is_used() -> None:
    second_started = threading.Event()
    made: list[int] = []

    def make() -> int:
        made.append(len(made))
        if len(made) == 2:
            second_started.set()
        return made[-1]

    items = prefetched(make, 3, ahead=1)
    assert next(items) == 0
    # The loop body of item 0 runs now; item 1 is being made meanwhile, not on request.
    assert second_started.wait(timeout=10)
    assert list(items) == [1, 2]


def test_an_error_surfaces_at_its_item_and_stops_later_calls() -> None:
    made: list[int] = []

    def make() -> int:
        made.append(len(made))
        if len(made) == 2:
            raise RuntimeError("corrupt batch")
        return made[-1]

    items = prefetched(make, 5, ahead=1)
    assert next(items) == 0
    with pytest.raises(RuntimeError, match="corrupt batch"):
        next(items)
    assert len(made) <= 3


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="count >= 0"):
        list(prefetched(lambda: 0, -1))


def test_auto_prefetches_on_cuda_only_and_on_off_are_obeyed() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert TrainConfig().prefetch == "auto"
    assert prefetch_ahead(TrainConfig(), cpu) == 0 and prefetch_ahead(TrainConfig(), cuda) == 1
    assert prefetch_ahead(TrainConfig(prefetch="on"), cpu) == 1
    assert prefetch_ahead(TrainConfig(prefetch="off"), cuda) == 0


def test_a_prefetched_round_equals_the_plain_one(tmp_path: Path) -> None:
    results = {}
    write_site(tmp_path / "data", num_studies=6)
    for mode in ("off", "on"):
        # The same folders for both (a site's seed depends on its state folder); each round
        # starts without the other's heads and optimizer.
        site = SiteConfig(data_dir=tmp_path / "data", state_dir=tmp_path / "state")
        (site.state_dir / STATE_FILE).unlink(missing_ok=True)
        results[mode] = train_round(cfg=round_config(local_steps=4, prefetch=mode), site=site,
                                    global_arrays=initial_arrays(), pool=None, server_round=1)
    off, on = results["off"], results["on"]
    assert on.metrics["steps"] == off.metrics["steps"] == 4
    assert on.metrics["train-loss"] == off.metrics["train-loss"]
    assert on.arrays.keys() == off.arrays.keys()
    assert all(torch.equal(on.arrays[k], off.arrays[k]) for k in off.arrays)
