"""The outgoing guard lets only global encoder weights, whitelisted metrics and SiteStats out."""

from __future__ import annotations

import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from client.guard import OutgoingMessageError, check_reply
from shared.config import RunConfig
from shared.model import build_encoder, global_state
from shared.stats_schema import SiteStats
from shared.wire_keys import Action, RecordKey

CFG = RunConfig.model_validate({"model": {"preset": "cpu-small"}})


def encoder_arrays() -> ArrayRecord:
    return ArrayRecord(global_state(build_encoder("cpu-small"), site_local_norm=True))


def train_reply(**extra) -> RecordDict:
    content = {RecordKey.ARRAYS: encoder_arrays(),
               RecordKey.METRICS: MetricRecord({"num-examples": 1, "train-loss": 1.0})}
    content.update(extra)
    return RecordDict(content)


def test_valid_train_reply_passes() -> None:
    check_reply(train_reply(), action=Action.TRAIN, cfg=CFG)


def test_an_image_cannot_leave() -> None:
    state = global_state(build_encoder("cpu-small"), site_local_norm=True)
    arrays = ArrayRecord({**dict(state.items()),
                          "image": torch.zeros(4, 16, 16, 16)})
    with pytest.raises(OutgoingMessageError, match="unexpected"):
        check_reply(train_reply(**{RecordKey.ARRAYS: arrays}), action=Action.TRAIN, cfg=CFG)


def test_a_reshaped_payload_under_a_weight_name_is_refused() -> None:
    state = global_state(build_encoder("cpu-small"), site_local_norm=True)
    state[next(iter(state))] = torch.zeros(7, 7)
    arrays = ArrayRecord(state)
    with pytest.raises(OutgoingMessageError, match="shape"):
        check_reply(train_reply(**{RecordKey.ARRAYS: arrays}), action=Action.TRAIN, cfg=CFG)


def test_site_local_parameters_cannot_leave() -> None:
    full = ArrayRecord(global_state(build_encoder("cpu-small"), site_local_norm=False))
    with pytest.raises(OutgoingMessageError):
        check_reply(train_reply(**{RecordKey.ARRAYS: full}), action=Action.TRAIN, cfg=CFG)


def test_unknown_metric_and_extra_record_are_refused() -> None:
    bad = train_reply(**{RecordKey.METRICS: MetricRecord({"num-examples": 1, "patient-age": 61})})
    with pytest.raises(OutgoingMessageError, match="patient-age"):
        check_reply(bad, action=Action.TRAIN, cfg=CFG)
    with pytest.raises(OutgoingMessageError, match="exactly"):
        check_reply(train_reply(extra=ConfigRecord({"site": "A"})), action=Action.TRAIN, cfg=CFG)


def test_list_valued_metrics_are_refused() -> None:
    bad = train_reply(**{RecordKey.METRICS: MetricRecord({"num-examples": 1, "train-loss": [1.0, 2.0]})})
    with pytest.raises(OutgoingMessageError, match="one number"):
        check_reply(bad, action=Action.TRAIN, cfg=CFG)


def test_stats_reply_must_be_a_valid_site_stats() -> None:
    ok = SiteStats(withheld=True, studies="withheld", epsilon=1.0).to_json()
    check_reply(RecordDict({RecordKey.STATS: ConfigRecord({"json": ok})}), action=Action.STATS,
                cfg=CFG)
    smuggled = ok[:-1] + ', "site_name": "St Elsewhere"}'
    with pytest.raises(OutgoingMessageError, match="SiteStats"):
        check_reply(RecordDict({RecordKey.STATS: ConfigRecord({"json": smuggled})}),
                    action=Action.STATS, cfg=CFG)


def test_evaluate_reply_cannot_carry_weights() -> None:
    with pytest.raises(OutgoingMessageError, match="exactly"):
        check_reply(train_reply(), action=Action.EVALUATE, cfg=CFG)


def test_templates_leave_only_when_the_run_shares_them() -> None:
    key = "head.masked_modality_reconstruction.templates"
    shared = RunConfig.model_validate({
        "model": {"preset": "cpu-small"},
        "pretext": {"name": "masked_modality_reconstruction", "share_templates": True}})
    state = global_state(build_encoder("cpu-small"), site_local_norm=True)
    with_templates = ArrayRecord({**state, key: torch.zeros(4, 1, 32, 32, 32)})
    check_reply(train_reply(**{RecordKey.ARRAYS: with_templates}), action=Action.TRAIN, cfg=shared)
    private = shared.model_copy(update={"pretext": (shared.pretext[0].model_copy(
        update={"share_templates": False}),)})
    with pytest.raises(OutgoingMessageError, match="unexpected"):
        check_reply(train_reply(**{RecordKey.ARRAYS: with_templates}), action=Action.TRAIN,
                    cfg=private)


@pytest.mark.parametrize("metric", ["num-examples", "skipped-studies"])
def test_counts_leave_only_as_coarse_buckets(metric: str) -> None:
    # An exact count (e.g. steps x a batch larger than the site) would reveal the site's size.
    exact = train_reply(**{RecordKey.METRICS: MetricRecord({"num-examples": 1, metric: 37})})
    with pytest.raises(OutgoingMessageError, match="coarse"):
        check_reply(exact, action=Action.TRAIN, cfg=CFG)
    coarse = train_reply(**{RecordKey.METRICS: MetricRecord({"num-examples": 1, metric: 10})})
    check_reply(coarse, action=Action.TRAIN, cfg=CFG)


def test_arrays_leave_only_in_the_runs_transfer_dtype() -> None:
    from flwr.app import Array

    from shared.transfer import to_wire

    bf16 = CFG.model_copy(update={"federation": CFG.federation.model_copy(
        update={"transfer_dtype": "bfloat16"})})
    state = global_state(build_encoder("cpu-small"), site_local_norm=True)
    wire = ArrayRecord({k: Array(v) for k, v in to_wire(state, "bfloat16").items()})
    check_reply(train_reply(**{RecordKey.ARRAYS: wire}), action=Action.TRAIN, cfg=bf16)
    with pytest.raises(OutgoingMessageError, match="transfer_dtype"):
        check_reply(train_reply(), action=Action.TRAIN, cfg=bf16)  # float32 in a bfloat16 run
    with pytest.raises(OutgoingMessageError, match="dtype int16, expected float32"):
        check_reply(train_reply(**{RecordKey.ARRAYS: wire}), action=Action.TRAIN, cfg=CFG)
