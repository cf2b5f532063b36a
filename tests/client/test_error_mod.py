"""No failure text leaves a site: the error mod and the outgoing guard on error replies."""

from __future__ import annotations

import logging

import pytest
from flwr.app import ConfigRecord, Context, Error, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from client.error_mod import contain_errors
from client.guard import outgoing_guard
from client.session import NoUsableDataRefusal
from client.site_limits import SiteLimitRefusal
from shared.config import RunConfig
from shared.site_errors import SiteErrorCode, is_site_error, site_error_reason
from shared.wire import encode_round_config
from shared.wire_keys import RecordKey

SECRET_PATH = "/data/oncology/BraTS2021_00042/BraTS2021_00042_t1.nii.gz"


@pytest.fixture(autouse=True)
def _task(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 7)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)


def message(kind: str = "train") -> Message:
    config = ConfigRecord(encode_round_config(RunConfig.model_validate({"model": {"preset": "cpu-small"}}),
                                              None))
    return Message(RecordDict({RecordKey.CONFIG: config}), dst_node_id=7, message_type=kind)


def context() -> Context:
    return Context(run_id=1, node_id=7, node_config={"data-dir": "/data/oncology"}, state=RecordDict(),
                   run_config={})


def failing(err: BaseException):
    def call_next(msg: Message, ctx: Context) -> Message:
        raise err
    return call_next


def test_an_exception_becomes_a_code_and_its_text_goes_to_the_site_log_only(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="fedmm.site"):
        reply = contain_errors(message(), context(), failing(ValueError(f"cannot read {SECRET_PATH}")))
    assert reply.has_error() and reply.error.code == SiteErrorCode.INTERNAL
    assert "BraTS2021_00042" not in reply.error.reason and "oncology" not in reply.error.reason
    assert is_site_error(reply.error.code, reply.error.reason)
    incident = reply.error.reason.split("incident ")[1].rstrip(")")
    assert any(incident in r.getMessage() and SECRET_PATH in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("err", "code", "setting"), [
    (SiteLimitRefusal(f"epsilon too large for {SECRET_PATH}", setting="privacy.epsilon"),
     SiteErrorCode.SITE_LIMIT, "privacy.epsilon"),
    (NoUsableDataRefusal(f"no readable study in {SECRET_PATH}"), SiteErrorCode.NO_USABLE_DATA, ""),
], ids=["limit", "no-data"])
def test_a_refusal_tells_its_code_and_setting_only(err: Exception, code: SiteErrorCode, setting: str) -> None:
    reply = contain_errors(message(), context(), failing(err))
    assert reply.error.code == code and "BraTS" not in reply.error.reason
    assert (f"[{setting}]" in reply.error.reason) == bool(setting)


def test_an_error_reply_made_inside_the_app_is_replaced() -> None:
    def call_next(msg: Message, ctx: Context) -> Message:
        return Message(Error(code=2, reason=f"failed on {SECRET_PATH}"), reply_to=msg)
    reply = contain_errors(message(), context(), call_next)
    assert reply.error.code == SiteErrorCode.INTERNAL and "BraTS" not in reply.error.reason


def test_the_guard_stops_error_replies_with_free_text_and_the_mod_contains_it() -> None:
    def leaky(msg: Message, ctx: Context) -> Message:
        return Message(Error(code=2, reason=SECRET_PATH), reply_to=msg)

    def guarded(msg: Message, ctx: Context) -> Message:
        return outgoing_guard(msg, ctx, leaky)
    reply = contain_errors(message(), context(), guarded)
    assert reply.error.code == SiteErrorCode.OUTGOING_BLOCKED and "BraTS" not in reply.error.reason
    fine = site_error_reason(SiteErrorCode.CONSENT, "0123456789ab")
    passed = outgoing_guard(message(), context(),
                            lambda msg, ctx: Message(Error(code=1903, reason=fine), reply_to=msg))
    assert passed.error.reason == fine


def test_update_clipping_clips_train_replies_only_when_the_server_asks() -> None:
    import numpy as np
    from flwr.app import Array, ArrayRecord, MetricRecord
    from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM

    from client.update_clipping import clip_updates

    sent = {"encoder.w": np.zeros(4, dtype=np.float32)}

    def train_message(clip: float | None) -> Message:
        msg = message()
        if clip is not None:
            msg.content.config_records[RecordKey.CONFIG][KEY_CLIPPING_NORM] = clip
        msg.content[RecordKey.ARRAYS] = ArrayRecord({k: Array(v) for k, v in sent.items()})
        return msg

    def train(msg: Message, ctx: Context) -> Message:
        moved = ArrayRecord({"encoder.w": Array(np.full(4, 3.0, dtype=np.float32))})  # update norm 6
        return Message(RecordDict({RecordKey.ARRAYS: moved, RecordKey.METRICS: MetricRecord({"a": 1})}),
                       reply_to=msg)

    clipped = clip_updates(train_message(0.5), context(), train).content.array_records[RecordKey.ARRAYS]
    assert np.isclose(np.linalg.norm(clipped["encoder.w"].numpy()), 0.5, rtol=1e-4)
    untouched = clip_updates(train_message(None), context(), train).content.array_records[RecordKey.ARRAYS]
    assert np.isclose(np.linalg.norm(untouched["encoder.w"].numpy()), 6.0)
