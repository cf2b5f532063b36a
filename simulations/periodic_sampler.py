"""A background thread that reads a number at a fixed interval while a block runs (the benchmarks' memory
and GPU-busy samples)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def sampled(read: Callable[[], float], *, interval_s: float) -> Iterator[list[float]]:
    """Call ``read`` once at the start and then every ``interval_s`` seconds until the block
    ends; the yielded list holds the values (complete once the block has exited).

    A ``read`` that raises ends the sampling quietly: what it could read is kept (e.g. a GPU
    driver without a utilization query yields an empty list).
    """
    if interval_s <= 0:
        raise ValueError(f"interval_s must be positive, got {interval_s}")
    values: list[float] = []
    stop = threading.Event()

    def loop() -> None:
        while True:
            try:
                values.append(float(read()))
            except Exception:  # the reading is optional; the measured block must not fail
                return
            if stop.wait(interval_s):
                return

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield values
    finally:
        stop.set()
        thread.join()
