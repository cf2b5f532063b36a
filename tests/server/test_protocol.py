"""The round protocol against a bad site, on a fake Grid: rejected replies, dropped releases."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, Metadata, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity
from safetensors.torch import load_file

from server.protocol import FederationError, run_pretraining
from shared.config import RunConfig
from shared.stats_schema import ModalityStats, SiteStats
from shared.wire_keys import Action, ConfigKey, RecordKey

HIST = (0.0625,) * 16
#: Each honest site k moves every weight by STEP * k per round.
STEP = 1e-3


@pytest.fixture(autouse=True)
def _server_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)


def answer(msg: Message, node: int, content: RecordDict) -> Message:
    meta = Metadata(run_id=1, message_id=f"r{node}", src_node_id=node, dst_node_id=0,
                    reply_to_message_id=f"unknown-{node}", group_id="", created_at=0.0, ttl=60.0,
                    message_type=msg.metadata.message_type)
    return Message(content, metadata=meta)


def release_json(mean: float) -> str:
    return SiteStats(withheld=False, studies="10-49", epsilon=8.0, modalities={
        "t1": ModalityStats(mean=mean, std=0.1, histogram=HIST)}).to_json()


def honest(node: int) -> Callable[[Message], Message]:
    def reply(msg: Message) -> Message:
        kind = msg.metadata.message_type
        if kind == Action.STATS:
            record = ConfigRecord({ConfigKey.STATS_JSON: release_json(0.1 * node)})
            return answer(msg, node, RecordDict({RecordKey.STATS: record}))
        metrics = MetricRecord({"num-examples": 10, "eval-loss" if kind == Action.EVALUATE
                                else "train-loss": 1.0})
        if kind == Action.EVALUATE:
            return answer(msg, node, RecordDict({RecordKey.METRICS: metrics}))
        arrays = ArrayRecord({k: Array((a.numpy() + STEP * node).astype(a.numpy().dtype))
                              for k, a in msg.content[RecordKey.ARRAYS].items()})
        return answer(msg, node, RecordDict({RecordKey.ARRAYS: arrays, RecordKey.METRICS: metrics}))
    return reply


def malicious(node: int) -> Callable[[Message], Message]:
    """Round 0: a NaN histogram; round 1: NaN weights; round 2: 1e12 examples and junk metrics."""
    base = honest(node)

    def reply(msg: Message) -> Message:
        out = base(msg)
        kind = msg.metadata.message_type
        if kind == Action.STATS:
            text = release_json(0.5).replace("0.0625", "NaN", 1)
            return answer(msg, node, RecordDict({RecordKey.STATS: ConfigRecord(
                {ConfigKey.STATS_JSON: text})}))
        if kind != Action.TRAIN:
            return out
        server_round = int(msg.content[RecordKey.CONFIG][ConfigKey.SERVER_ROUND])
        arrays = {k: a.numpy() for k, a in out.content[RecordKey.ARRAYS].items()}
        metrics: dict[str, Any] = {"num-examples": 10, "train-loss": 1.0, "patient-name": 1.0}
        if server_round == 1:
            arrays = {k: np.full_like(v, np.nan) for k, v in arrays.items()}
        else:
            metrics["num-examples"] = 1e12
        return answer(msg, node, RecordDict({
            RecordKey.ARRAYS: ArrayRecord({k: Array(v) for k, v in arrays.items()}),
            RecordKey.METRICS: MetricRecord(metrics)}))
    return reply


class FakeGrid:
    """Just enough of Flower's Grid: every site answers at once."""

    def __init__(self, sites: dict[int, Callable[[Message], Message]]) -> None:
        self.sites = sites

    def get_node_ids(self) -> list[int]:
        return list(self.sites)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None
                         ) -> list[Message]:
        return [self.sites[m.metadata.dst_node_id](m) for m in messages]


def config(tmp_path: Path, **federation: Any) -> RunConfig:
    return RunConfig.model_validate({
        "out_dir": str(tmp_path), "model": {"preset": "cpu-small"},
        "federation": {"num_rounds": 2, "min_nodes": 3, "connect_timeout_s": 5, **federation}})


def encoder_at(tmp_path: Path, rnd: int) -> dict[str, torch.Tensor]:
    return load_file(tmp_path / "checkpoints" / f"round_{rnd:04d}.safetensors")


def test_a_bad_site_is_rejected_every_round_and_the_encoder_is_the_honest_sites_average(
        tmp_path: Path) -> None:
    grid = FakeGrid({1: honest(1), 2: honest(2), 3: malicious(3)})
    run_pretraining(grid, config(tmp_path), preset="cpu-small")  # type: ignore[arg-type]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    (dropped,) = metrics["meta"]["statistics_failures"]
    assert dropped["node"] == "3" and "statistics release dropped" in dropped["reason"]
    assert metrics["meta"]["pool"]["contributors"] == 2
    first, second = metrics["rounds"]
    assert [f["rejected"] for f in first["train"]["failures"]] == ["non-finite"]
    assert [f["rejected"] for f in second["train"]["failures"]] == ["num-examples"]
    for rnd in (first, second):
        assert rnd["train"]["aggregated"] and sorted(rnd["train"]["sites"]) == ["1", "2"]
        assert rnd["train"]["failures"][0]["node"] == "3"
        assert all("patient-name" not in s for s in rnd["evaluate"]["sites"].values())
        assert all(s["update-norm"] > 0 and s["aggregation-weight"] == 10
                   for s in rnd["train"]["sites"].values())
    start, end = encoder_at(tmp_path, 0), encoder_at(tmp_path, 2)
    for key in start:   # two rounds of the mean honest step, (1 + 2) / 2 * STEP each
        torch.testing.assert_close(end[key], start[key] + 2 * 1.5 * STEP, rtol=0, atol=1e-6)
    exported = load_file(tmp_path / "encoder.safetensors")
    assert all(torch.isfinite(v).all() for v in exported.values())


def test_a_round_below_quorum_after_rejections_keeps_the_encoder_and_says_why(tmp_path: Path) -> None:
    grid = FakeGrid({1: honest(1), 2: honest(2), 3: malicious(3)})
    with pytest.raises(FederationError, match="No round was aggregated"):
        run_pretraining(grid, config(tmp_path, quorum=1.0), preset="cpu-small")  # type: ignore[arg-type]
    rounds = json.loads((tmp_path / "metrics.json").read_text())["rounds"]
    assert [r["train"]["aggregated"] for r in rounds] == [False, False]
    assert "2 of 3 sites sent an update that was accepted; the quorum is 3" in rounds[0]["train"]["reason"]
    for rnd in (1, 2):
        start, now = encoder_at(tmp_path, 0), encoder_at(tmp_path, rnd)
        assert all(torch.equal(start[k], now[k]) for k in start)


def test_a_non_finite_aggregate_is_never_committed(tmp_path: Path) -> None:
    # FedAdam's step at eta = 1e40 overflows float32: every aggregate would be inf.
    grid = FakeGrid({1: honest(1), 2: honest(2), 3: honest(3)})
    cfg = config(tmp_path, strategy={"name": "fedadam", "eta": 1e40})
    with pytest.raises(FederationError, match="No round was aggregated"):
        run_pretraining(grid, cfg, preset="cpu-small")  # type: ignore[arg-type]
    rounds = json.loads((tmp_path / "metrics.json").read_text())["rounds"]
    for entry in rounds:
        assert not entry["train"]["aggregated"] and "NaN or infinity" in entry["train"]["reason"]
        assert len(entry["train"]["sites"]) == 3 and entry["train"]["failures"] == []
    start, last = encoder_at(tmp_path, 0), encoder_at(tmp_path, 2)
    assert all(torch.equal(start[k], last[k]) for k in start)
