"""Make a loop's next inputs in a background thread while the current step runs.

A site's step on a GPU waits on the CPU: the batch's crops and every task's views are made
there. :func:`prefetched` runs those calls one step ahead in a single thread, so they
overlap the GPU's work on the current step. One producer thread calls ``make`` in order, so
the items, and every random draw inside ``make``, are exactly those of the plain loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def prefetched(make: Callable[[], T], count: int, *, ahead: int = 1) -> Iterator[T]:
    """``make()`` called ``count`` times, in order, up to ``ahead`` calls before they are used.

    ``ahead=0`` calls it in the loop itself. An exception from ``make`` is raised where its
    item would have been yielded; calls already started then finish, later ones never start.
    """
    if count < 0 or ahead < 0:
        raise ValueError(f"expected count >= 0 and ahead >= 0, got count={count}, ahead={ahead}")
    if ahead == 0:
        for _ in range(count):
            yield make()
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fedmm-prefetch") as pool:
        pending: list[Future[T]] = [pool.submit(make) for _ in range(min(ahead, count))]
        submitted = len(pending)
        try:
            while pending:
                item = pending.pop(0).result()
                if submitted < count:
                    pending.append(pool.submit(make))
                    submitted += 1
                yield item
        finally:
            for future in pending:
                future.cancel()
