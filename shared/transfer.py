"""The dtype a site's encoder update travels in (``federation.transfer_dtype``), both ways of the cast.

A site casts the floating-point entries of its reply to the run's transfer dtype; the
server checks each entry has exactly that wire dtype, casts it back to float32 and
aggregates in float32. Entries that are not floating point (e.g. BatchNorm's
``num_batches_tracked`` when normalization is global) travel unchanged.

NumPy has no bfloat16, and Flower's ``Array`` serializes NumPy arrays, so a bfloat16
entry travels as its raw 16-bit pattern in an ``int16`` array: the cast back to float32
(shifting the bits into the high half of a float32) is exact. float16 travels as
``float16``. Pure torch/NumPy: no Flower here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import get_args

import numpy as np
import torch

from shared.config import TransferDtype

TRANSFER_DTYPES: tuple[str, ...] = get_args(TransferDtype)

_TORCH: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16,
                                  "float16": torch.float16}
#: The NumPy dtype a float32 entry has on the wire for each transfer dtype.
_WIRE: dict[str, np.dtype] = {"float32": np.dtype(np.float32), "bfloat16": np.dtype(np.int16),
         "float16": np.dtype(np.float16)}


def _require(transfer: str) -> str:
    if transfer not in _WIRE:
        raise ValueError(f"transfer dtype must be one of {list(TRANSFER_DTYPES)}, got {transfer!r}. "
                         "Fix: set federation.transfer_dtype to one of them.")
    return transfer


def wire_dtype(reference: np.dtype, transfer: str) -> np.dtype:
    """The dtype an entry whose server-side dtype is ``reference`` must have on the wire."""
    if reference.kind != "f":
        return reference
    return _WIRE[_require(transfer)]


def to_wire(arrays: Mapping[str, torch.Tensor], transfer: str) -> dict[str, np.ndarray]:
    """A site's reply as NumPy arrays in the transfer dtype (non-float entries unchanged).

    Values beyond float16's range become infinity, which the server's finiteness check
    rejects: a run whose encoder needs that range must not use float16.
    """
    dtype = _TORCH[_require(transfer)]
    out: dict[str, np.ndarray] = {}
    for name, tensor in arrays.items():
        value = tensor.detach().cpu()
        if value.is_floating_point():
            value = value.to(dtype)
            if dtype == torch.bfloat16:
                value = value.view(torch.int16)
        out[name] = value.contiguous().numpy()
    return out


def from_wire(arrays: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray],
              transfer: str) -> dict[str, np.ndarray]:
    """Arrays received in the transfer dtype, cast back to the reference's dtypes (float32).

    Raises:
        ValueError: an entry's dtype is not the wire dtype ``transfer`` gives its
            reference (the caller checks dtypes first; this is a guard, not the check).
    """
    _require(transfer)
    out: dict[str, np.ndarray] = {}
    for name, ref in reference.items():
        got = arrays[name]
        want = wire_dtype(ref.dtype, transfer)
        if got.dtype != want:
            raise ValueError(f"entry {name!r}: expected wire dtype {want} for transfer dtype "
                             f"{transfer!r}, got {got.dtype}")
        if ref.dtype.kind != "f" or got.dtype == ref.dtype:
            out[name] = got
        elif transfer == "bfloat16":
            bits = torch.from_numpy(np.ascontiguousarray(got)).view(torch.bfloat16)
            out[name] = bits.to(torch.float32).numpy().astype(ref.dtype, copy=False)
        else:
            out[name] = got.astype(ref.dtype)
    return out

