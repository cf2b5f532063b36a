"""What a malicious site sends instead of its honest reply: one function per kind of reply.

Test-only (the campaign's app copy holds it as ``client/campaign_attacks.py``); plain
NumPy and JSON, so the attacks are tested against the server's checks without Flower.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

#: Training attacks (rounds 1..) and the statistics attack (round 0).
TRAIN_ATTACKS = ("nan", "inf", "huge", "dtype", "signflip", "examples-nan", "examples-1e12")
STATS_ATTACKS = ("stats-nan",)


def _float_keys(arrays: dict[str, np.ndarray]) -> list[str]:
    return [k for k, v in arrays.items() if v.dtype.kind == "f"]


def corrupt_train(attack: str, sent: dict[str, np.ndarray], honest: dict[str, np.ndarray],
                  metrics: dict[str, Any], *, signflip_scale: float
                  ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and metrics a malicious site sends instead of its honest ones."""
    arrays = {k: v.copy() for k, v in honest.items()}
    first = _float_keys(arrays)[0]
    if attack == "nan":
        arrays[first].reshape(-1)[0] = np.nan
    elif attack == "inf":
        arrays[first].reshape(-1)[0] = np.inf
    elif attack == "huge":
        arrays = {k: np.full_like(v, 1e30) if v.dtype.kind == "f" else v for k, v in arrays.items()}
    elif attack == "dtype":
        arrays = {k: v.astype(np.float64) for k, v in arrays.items()}
    elif attack == "signflip":
        arrays = {k: (sent[k] - signflip_scale * (v - sent[k])).astype(v.dtype)
                  if v.dtype.kind == "f" else v for k, v in arrays.items()}
    elif attack == "examples-nan":
        metrics = {**metrics, "num-examples": float("nan")}
    elif attack == "examples-1e12":
        metrics = {**metrics, "num-examples": 1e12}
    else:
        raise ValueError(f"unknown training attack {attack!r}")
    return arrays, metrics


def corrupt_stats(attack: str, text: str) -> str:
    """The statistics release a malicious site sends instead of its honest one."""
    if attack != "stats-nan":
        raise ValueError(f"unknown statistics attack {attack!r}")
    release = json.loads(text)
    if release["modalities"]:
        name = sorted(release["modalities"])[0]
        release["modalities"][name]["histogram"][0] = float("nan")
    else:  # a site too small to release statistics (withheld) still states its epsilon
        release["epsilon"] = float("nan")
    return json.dumps(release)  # Python writes NaN, as a careless or hostile site might
