"""The server's metrics in TensorBoard and MLflow: what metrics.json records, read back with
each tool's own reader."""

from __future__ import annotations

import json
import logging

import pytest

from server.metrics_log import MetricsLog
from server.tracking import (
    TENSORBOARD_DIR,
    RunTracker,
    TrackingError,
    check_tracking,
    scalars,
    where_to_look,
    with_mlflow,
)
from shared.config import ConfigError, RunConfig, TrackingConfig
from shared.wire import decode_round_config, encode_round_config

NODE_A, NODE_B = "1111", "2222"


@pytest.fixture(autouse=True)
def _file_store_switch(monkeypatch) -> None:
    """MLflow 3 opens file: stores only with this switch, which the tracker sets for a file:
    URI; set here so that this module's tests leave the environment as they found it."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")


def _round(rnd: int, *, evaluated: bool) -> dict:
    """A round entry shaped as server/protocol.py writes it."""
    return {
        "round": rnd,
        "seconds": 10.0 + rnd,
        "train": {
            "aggregated": True,
            "loss": 2.0 / rnd,
            "sites": {
                NODE_A: {"train-loss": 2.1 / rnd, "num-examples": 40, "bytes-sent-by-site": 1000,
                         "bytes-received-by-site": 1000, "update-norm": 0.5},
                NODE_B: {"train-loss": 1.9 / rnd, "num-examples": 60, "bytes-sent-by-site": 1000,
                         "bytes-received-by-site": 1000, "update-norm": 0.7},
            },
            "failures": [{"node": "3333", "code": 1902, "reason": "refused"}],
            "update_privacy": {"noise_multiplier": 1.0, "sites": 2, "sampled": 3,
                               "epsilon": 0.8 * rnd, "delta": 1e-5},
        },
        "evaluate": {"loss": 1.5 / rnd if evaluated else None,
                     "sites": {NODE_A: {"eval-loss": 1.5 / rnd}} if evaluated else {},
                     "failures": []},
    }


def _run(tmp_path, config: TrackingConfig) -> MetricsLog:
    metrics = MetricsLog(tmp_path, tracker=RunTracker(tmp_path, config=config))
    metrics.set_meta(config={"seed": 0, "federation": {"num_rounds": 2}},
                     pool={"contributors": 2, "withheld": 1, "modalities": {"t1": 2}},
                     statistics_failures=[])
    for rnd in (1, 2):  # as the protocol does: after training, then again after evaluation
        metrics.record_round(_round(rnd, evaluated=False))
        metrics.record_round(_round(rnd, evaluated=True))
    metrics.close()
    return metrics


def _json_scalars(tmp_path) -> dict[tuple[int, str], float]:
    """Every number metrics.json holds, keyed as the trackers name them."""
    doc = json.loads((tmp_path / "metrics.json").read_text())
    out = {(0, f"meta/{k}"): v for k, v in scalars({k: v for k, v in doc["meta"].items()
                                                     if k != "config"})}
    for entry in doc["rounds"]:
        out.update({(entry["round"], k): v for k, v in scalars(entry) if k != "round"})
    return out


def test_scalars_flatten_an_entry_as_documented() -> None:
    flat = dict(scalars(_round(1, evaluated=True)))
    assert flat["train/loss"] == 2.0 and flat["train/aggregated"] == 1.0
    assert flat[f"train/sites/{NODE_B}/num-examples"] == 60.0
    assert flat["train/sites/count"] == 2.0 and flat["train/failures"] == 1.0
    assert flat["train/update_privacy/epsilon"] == pytest.approx(0.8)
    assert not any("reason" in k or "node" in k for k in flat)  # strings stay in metrics.json


def test_tensorboard_holds_exactly_the_numbers_metrics_json_holds(tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _run(tmp_path, TrackingConfig())
    events = EventAccumulator(str(tmp_path / TENSORBOARD_DIR))
    events.Reload()
    got: dict[tuple[int, str], float] = {}
    for tag in events.Tags()["scalars"]:
        steps = [e.step for e in events.Scalars(tag)]
        assert len(steps) == len(set(steps)), f"{tag} logged twice for one round: {steps}"
        got.update({(e.step, tag): e.value for e in events.Scalars(tag)})
    want = _json_scalars(tmp_path)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-6), key
    assert "config/text_summary" in events.Tags()["tensors"]  # the run's config as text


def test_mlflow_file_store_holds_the_same_numbers_and_the_config(tmp_path) -> None:
    from mlflow import MlflowClient

    uri = (tmp_path / "mlruns").as_uri()
    out = tmp_path / "run"
    out.mkdir()
    _run(out, TrackingConfig(tensorboard=False, mlflow_uri=uri, mlflow_experiment="fedmm-test"))
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("fedmm-test")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.params["federation.num_rounds"] == "2"
    want = _json_scalars(out)
    got = {(m.step, m.key): m.value for key in run.data.metrics
           for m in client.get_metric_history(run.info.run_id, key)}
    assert got == pytest.approx(want)
    assert f"run {run.info.run_id}" in where_to_look(out, TrackingConfig(mlflow_uri=uri))[-1]


def test_a_resumed_run_keeps_logging_to_its_mlflow_run(tmp_path) -> None:
    from mlflow import MlflowClient

    uri = (tmp_path / "mlruns").as_uri()
    config = TrackingConfig(tensorboard=False, mlflow_uri=uri)
    first = RunTracker(tmp_path, config=config)
    first.log_round(_round(1, evaluated=True))
    first.close()
    again = RunTracker(tmp_path, config=config)
    again.log_round(_round(2, evaluated=True))
    again.close()
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("fedmm").experiment_id])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1, 2]


def test_a_tracker_that_fails_mid_run_is_switched_off_not_the_run(tmp_path, caplog) -> None:
    tracker = RunTracker(tmp_path, config=TrackingConfig())
    tracker._tensorboard.writer.close()  # e.g. the disk went away

    def broken(*_args, **_kwargs):
        raise OSError("No space left on device")

    tracker._tensorboard.log = broken
    metrics = MetricsLog(tmp_path, tracker=tracker)
    with caplog.at_level(logging.WARNING, logger="server.tracking"):
        metrics.record_round(_round(1, evaluated=True))
        metrics.record_round(_round(2, evaluated=True))
    assert "Stopped logging to tensorboard" in caplog.text and "No space left" in caplog.text
    assert [r["round"] for r in json.loads((tmp_path / "metrics.json").read_text())["rounds"]] == [1, 2]


def test_an_mlflow_server_that_does_not_answer_fails_before_the_run() -> None:
    with pytest.raises(TrackingError, match=r"expected an MLflow tracking server at http://127\.0\.0\.1:9"):
        check_tracking(TrackingConfig(mlflow_uri="http://127.0.0.1:9"))


def test_mlflow_uri_without_a_scheme_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"(?s)--mlflow.*with a scheme.*file:///abs/mlruns"):
        with_mlflow(RunConfig(), "mlruns")
    assert with_mlflow(RunConfig(), "sqlite:///tmp/m.db").tracking.mlflow_uri == "sqlite:///tmp/m.db"


def test_sites_never_receive_the_servers_tracking_settings() -> None:
    cfg = with_mlflow(RunConfig(), "http://user:secret@mlflow.example.org")
    sent, _, _ = decode_round_config(encode_round_config(cfg, None))
    assert sent.tracking == TrackingConfig()
    assert "secret" not in json.dumps(encode_round_config(cfg, None))
