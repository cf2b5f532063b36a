"""What a site checks in every round's input before it trains or evaluates: the server can err too.

The global encoder and the statistics pool come from the coordinator. A NaN in either
would make the site train on garbage (and send garbage back), and a pool of the wrong
shape would fail deep inside AdaDN with an error that says nothing about where it came
from. So a site refuses a round, with the code ``bad-server-input``
(``shared/site_errors.py``), unless

* the arrays are exactly the encoder entries this run's model has, each with its shape,
  and every floating-point entry is finite;
* the pool decodes as a ``StatsPool`` (which refuses NaN and infinity), covers only the
  run's modalities, and each histogram has ``data.hist_bins`` bins.

The message with the details stays in the site's log; the server learns only the code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from shared.config import RunConfig
from shared.site_errors import SiteErrorCode, SiteRefusal
from shared.stats_schema import StatsPool


class IncomingRefusal(SiteRefusal, ValueError):
    """The server sent a round input that is not finite or not shaped as the run expects."""

    code = SiteErrorCode.BAD_SERVER_INPUT


def check_global_arrays(arrays: Mapping[str, torch.Tensor],
                        expected: Mapping[str, tuple[int, ...]]) -> None:
    """Refuse arrays that are not exactly ``expected`` (names and shapes) or not finite.

    Raises:
        IncomingRefusal: naming the first problem and what was expected.
    """
    if set(arrays) != set(expected):
        raise IncomingRefusal(
            f"The server sent encoder arrays {sorted(set(arrays) - set(expected))[:3]} that this "
            f"run's model does not have and lacks {sorted(set(expected) - set(arrays))[:3]}; "
            f"expected exactly the {len(expected)} global entries. Fix: server and site must "
            "run the same fedmm release and run config."
        )
    for name, tensor in arrays.items():
        if tuple(tensor.shape) != tuple(expected[name]):
            raise IncomingRefusal(
                f"The server sent {name!r} with shape {tuple(tensor.shape)}, expected "
                f"{tuple(expected[name])}. Fix: server and site must run the same fedmm release."
            )
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise IncomingRefusal(
                f"The server sent {name!r} with NaN or infinity; expected a finite encoder. "
                "The site does not train on it. Fix (coordinator): the server must not commit "
                "a non-finite aggregate; check its log and metrics.json for this round."
            )


def check_pool(pool: StatsPool | None, cfg: RunConfig) -> None:
    """Refuse a statistics pool with modalities the run lacks, misshaped or non-finite entries.

    Raises:
        IncomingRefusal: naming the modality and the problem.
    """
    if pool is None:
        return
    unknown = sorted(set(pool.modalities) - set(cfg.data.modalities))
    if unknown:
        raise IncomingRefusal(f"The statistics pool holds modalities {unknown} that the run does "
                              f"not use (data.modalities = {list(cfg.data.modalities)}).")
    for name, entries in pool.modalities.items():
        for i, stats in enumerate(entries):
            values = (stats.mean, stats.std, *stats.histogram)
            if not all(math.isfinite(v) for v in values):
                raise IncomingRefusal(f"Pooled statistics {name}[{i}] hold NaN or infinity.")
            if len(stats.histogram) != cfg.data.hist_bins:
                raise IncomingRefusal(
                    f"Pooled statistics {name}[{i}] have a {len(stats.histogram)}-bin histogram, "
                    f"expected data.hist_bins = {cfg.data.hist_bins}.")
