"""A site refuses a round whose encoder or statistics pool is not finite or not shaped as expected."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from client.app import app
from client.guard import expected_arrays
from client.incoming_checks import IncomingRefusal, check_global_arrays, check_pool
from shared.config import RunConfig
from shared.model import build_encoder, global_state
from shared.site_errors import SiteErrorCode, describe_site_error, is_site_error, site_error_reason
from shared.stats_schema import ModalityStats, StatsPool
from shared.wire import InvalidPoolError, decode_round_config, encode_round_config
from shared.wire_keys import ConfigKey, RecordKey

CFG = RunConfig.model_validate({"model": {"preset": "cpu-small"}, "data": {"hist_bins": 4}})
HIST = (0.25, 0.25, 0.25, 0.25)


@pytest.fixture(autouse=True)
def _task(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 7)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)


def encoder_arrays() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return global_state(build_encoder("cpu-small"), site_local_norm=CFG.model.site_local_norm)


def pool(**overrides: object) -> StatsPool:
    entry = ModalityStats(mean=0.4, std=0.1, histogram=HIST)
    return StatsPool(modalities={"t1": (entry,), **overrides}, contributors=1)  # type: ignore[arg-type]


def test_the_encoder_as_sent_passes() -> None:
    check_global_arrays(encoder_arrays(), expected_arrays(CFG))


@pytest.mark.parametrize("corrupt", ["nan", "inf", "shape", "missing", "extra"])
def test_a_bad_encoder_is_refused_with_its_code(corrupt: str) -> None:
    arrays = encoder_arrays()
    name = next(iter(arrays))
    if corrupt == "nan":
        arrays[name] = arrays[name].clone()
        arrays[name].view(-1)[0] = float("nan")
    elif corrupt == "inf":
        arrays[name] = torch.full_like(arrays[name], float("inf"))
    elif corrupt == "shape":
        arrays[name] = torch.zeros(3)
    elif corrupt == "missing":
        del arrays[name]
    else:
        arrays["encoder.extra"] = torch.zeros(1)
    with pytest.raises(IncomingRefusal, match="server sent") as err:
        check_global_arrays(arrays, expected_arrays(CFG))
    assert err.value.code == SiteErrorCode.BAD_SERVER_INPUT


def test_a_well_formed_pool_passes_and_none_is_fine() -> None:
    check_pool(pool(), CFG)
    check_pool(None, CFG)


def test_a_pool_of_other_modalities_or_bins_is_refused() -> None:
    with pytest.raises(IncomingRefusal, match="does not use"):
        check_pool(pool(pd=(ModalityStats(mean=0.4, std=0.1, histogram=HIST),)), CFG)
    eight = ModalityStats(mean=0.4, std=0.1, histogram=(0.125,) * 8)
    with pytest.raises(IncomingRefusal, match=r"8-bin histogram, expected data\.hist_bins = 4"):
        check_pool(StatsPool(modalities={"t1": (eight,)}), CFG)


def test_a_non_finite_pool_does_not_decode() -> None:
    record = dict(encode_round_config(CFG, pool()))
    record[ConfigKey.STATS_POOL] = record[ConfigKey.STATS_POOL].replace('"mean":0.4', '"mean":NaN')
    assert "NaN" in record[ConfigKey.STATS_POOL]
    with pytest.raises(InvalidPoolError, match="does not validate"):
        decode_round_config(record)
    # what the server wrote for NaN before validating releases: null
    record[ConfigKey.STATS_POOL] = record[ConfigKey.STATS_POOL].replace("NaN", "null")
    with pytest.raises(InvalidPoolError):
        decode_round_config(record)


def train_message(arrays: dict[str, torch.Tensor], config: dict[str, str]) -> Message:
    content = RecordDict({
        RecordKey.ARRAYS: ArrayRecord({k: Array(v.numpy()) for k, v in arrays.items()}),
        RecordKey.CONFIG: ConfigRecord({**config, ConfigKey.SERVER_ROUND: 1}),
    })
    return Message(content, dst_node_id=7, message_type="train")


def site_context(tmp_path: Path) -> Context:
    node_config = {"data-dir": str(tmp_path / "data"), "state-dir": str(tmp_path / "state")}
    return Context(run_id=1, node_id=7, node_config=node_config, state=RecordDict(), run_config={})


def test_the_client_app_refuses_a_nan_encoder_before_reading_any_data(tmp_path: Path) -> None:
    arrays = encoder_arrays()
    name = next(iter(arrays))
    arrays[name] = torch.full_like(arrays[name], float("nan"))
    reply = app(train_message(arrays, encode_round_config(CFG, pool())), site_context(tmp_path))
    assert reply.has_error() and reply.error.code == SiteErrorCode.BAD_SERVER_INPUT
    assert is_site_error(reply.error.code, reply.error.reason)
    assert not (tmp_path / "state").exists()   # refused before the site opened its data


def test_the_client_app_refuses_a_nan_pool(tmp_path: Path) -> None:
    config = dict(encode_round_config(CFG, pool()))
    config[ConfigKey.STATS_POOL] = config[ConfigKey.STATS_POOL].replace('"mean":0.4', '"mean":NaN')
    reply = app(train_message(encoder_arrays(), config), site_context(tmp_path))
    assert reply.has_error() and reply.error.code == SiteErrorCode.BAD_SERVER_INPUT


def test_the_coordinator_reads_what_the_code_means() -> None:
    reason = site_error_reason(SiteErrorCode.BAD_SERVER_INPUT, "0123456789ab")
    assert reason == "fedmm bad-server-input (incident 0123456789ab)"
    assert "not finite" in describe_site_error(int(SiteErrorCode.BAD_SERVER_INPUT), reason)
