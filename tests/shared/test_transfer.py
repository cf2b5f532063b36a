"""federation.transfer_dtype: a site's update cast to 16 bits and back, exactly where it must be."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shared.config import ConfigError, validate_run_config
from shared.model import build_encoder, global_state
from shared.transfer import TRANSFER_DTYPES, from_wire, to_wire, wire_dtype

TORCH = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def reference(state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in state.items()}


@pytest.mark.parametrize("transfer", TRANSFER_DTYPES)
def test_round_trip_equals_torch_cast(transfer: str) -> None:
    torch.manual_seed(0)
    state = {"w": torch.randn(5, 7), "b": torch.randn(3) * 1e3, "steps": torch.tensor(12)}
    wire = to_wire(state, transfer)
    assert wire["w"].dtype == wire_dtype(np.dtype(np.float32), transfer)
    assert wire["steps"].dtype == np.int64 and int(wire["steps"]) == 12  # non-float unchanged
    back = from_wire(wire, reference(state), transfer)
    for name in ("w", "b"):
        assert back[name].dtype == np.float32
        expected = state[name].to(TORCH[transfer]).to(torch.float32).numpy()
        np.testing.assert_array_equal(back[name], expected)


@pytest.mark.parametrize(("transfer", "rtol"), [("bfloat16", 2**-8), ("float16", 2**-11)])
def test_sixteen_bits_halve_the_bytes_within_their_precision(transfer: str, rtol: float) -> None:
    state = global_state(build_encoder("cpu-small"), site_local_norm=True)
    wire = to_wire(state, transfer)
    full = sum(v.numel() * v.element_size() for v in state.values())
    assert sum(a.nbytes for a in wire.values()) == full // 2
    back = from_wire(wire, reference(state), transfer)
    for name, value in state.items():
        np.testing.assert_allclose(back[name], value.numpy(), rtol=rtol, atol=1e-7)


def test_float32_travels_unchanged() -> None:
    state = {"w": torch.randn(4)}
    wire = to_wire(state, "float32")
    np.testing.assert_array_equal(wire["w"], state["w"].numpy())
    assert from_wire(wire, reference(state), "float32")["w"] is wire["w"]


def test_float16_overflow_becomes_infinity() -> None:
    """The server's finiteness check then rejects it; nothing is silently clipped."""
    wire = to_wire({"w": torch.tensor([1e6])}, "float16")
    assert np.isinf(from_wire(wire, {"w": np.zeros(1, np.float32)}, "float16")["w"]).all()


def test_wrong_wire_dtype_and_unknown_transfer_are_named() -> None:
    with pytest.raises(ValueError, match="expected wire dtype int16"):
        from_wire({"w": np.zeros(2, np.float32)}, {"w": np.zeros(2, np.float32)}, "bfloat16")
    with pytest.raises(ValueError, match=r"federation\.transfer_dtype"):
        to_wire({"w": torch.zeros(2)}, "int8")


def test_config_default_choices_and_update_dp() -> None:
    assert validate_run_config({}, source="t").federation.transfer_dtype == "float32"
    cfg = validate_run_config({"federation": {"transfer_dtype": "bfloat16"}}, source="t")
    assert cfg.federation.transfer_dtype == "bfloat16"
    with pytest.raises(ConfigError, match="transfer_dtype"):
        validate_run_config({"federation": {"transfer_dtype": "int8"}}, source="t")
    with pytest.raises(ConfigError, match="transfer_dtype = 'float32'"):
        validate_run_config({"federation": {"transfer_dtype": "float16"},
                             "privacy": {"updates": {"enabled": True}}}, source="t")
