"""The one site-local/global split, used identically by client and server."""

from __future__ import annotations

import pytest
import torch

from shared.model import build_encoder, global_parameter_names, global_state, load_global_state


@pytest.mark.parametrize("preset", ["cpu-small", "gpu-base"])
def test_norm_parameters_stay_local(preset: str) -> None:
    enc = build_encoder(preset)
    names = global_parameter_names(enc, site_local_norm=True)
    assert names and all(n.startswith("encoder.") for n in names)
    assert not any(".adn.N." in n for n in names), "GroupNorm parameters must stay on the site"
    everything = global_parameter_names(enc, site_local_norm=False)
    assert set(names) < set(everything)
    assert any(".adn.N." in n for n in everything)


def test_load_global_state_leaves_local_parameters() -> None:
    torch.manual_seed(0)
    a, b = build_encoder("cpu-small"), build_encoder("cpu-small")
    with torch.no_grad():
        for p in b.parameters():
            p.add_(1.0)
    local_before = {k: v.clone() for k, v in b.state_dict().items() if ".adn.N." in k}
    load_global_state(b, global_state(a, site_local_norm=True), site_local_norm=True)
    for k, v in b.state_dict().items():
        if ".adn.N." in k:
            torch.testing.assert_close(v, local_before[k])
        else:
            torch.testing.assert_close(v, a.state_dict()[k])


def test_load_global_state_rejects_mismatch() -> None:
    enc = build_encoder("cpu-small")
    state = global_state(enc, site_local_norm=True)
    state["encoder.head.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="unexpected"):
        load_global_state(enc, state, site_local_norm=True)


def test_encoder_rejects_multichannel_input() -> None:
    with pytest.raises(ValueError, match=r"\(N, 1, D, H, W\) batch"):
        build_encoder("cpu-small")(torch.zeros(2, 4, 16, 16, 16))
