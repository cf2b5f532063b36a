"""Checkpoints, resume state, metrics log and the exported encoder."""

from __future__ import annotations

import json

import pytest
import torch

from server.checkpoints import CheckpointStore, export_encoder
from server.metrics_log import MetricsLog
from shared.model import build_encoder, load_pretrained_encoder
from shared.stats_schema import ModalityStats, StatsPool


def test_save_and_resume_latest(tmp_path) -> None:
    store = CheckpointStore(tmp_path)
    pool = StatsPool(contributors=2)
    for rnd in range(3):
        store.save_round(rnd, {"encoder.w": torch.full((2,), float(rnd))}, pool, config_json="{}")
    state = store.load_latest()
    assert state.last_round == 2 and state.pool == pool
    torch.testing.assert_close(state.arrays["encoder.w"], torch.full((2,), 2.0))
    assert len(list((tmp_path / "checkpoints").glob("round_*.safetensors"))) == 3


def test_resume_without_checkpoint_says_what_is_missing(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"server_state\.json does not exist"):
        CheckpointStore(tmp_path).load_latest()


def test_metrics_log_drops_unfinished_rounds_on_resume(tmp_path) -> None:
    log = MetricsLog(tmp_path)
    for rnd in (1, 2, 3):
        log.record_round({"round": rnd, "train": {"loss": float("nan")}, "evaluate": {"loss": 1.0}})
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert doc["rounds"][0]["train"]["loss"] is None  # NaN written as null, file stays valid JSON
    resumed = MetricsLog(tmp_path, keep_until_round=2)
    assert [r["round"] for r in resumed.rounds] == [1, 2]


def test_exported_encoder_loads_in_one_line(tmp_path) -> None:
    torch.manual_seed(3)
    enc = build_encoder("cpu-small")
    path, card = export_encoder(tmp_path, enc.state_dict(), preset="cpu-small", card={"rounds": 1})
    loaded = load_pretrained_encoder(path)
    x = torch.rand(1, 1, 16, 16, 16)
    torch.testing.assert_close(loaded(x), enc(x))
    assert json.loads(card.read_text())["rounds"] == 1


def test_resume_validates_the_checkpointed_pool(tmp_path) -> None:
    # A pool checkpointed by a fedmm that pooled a NaN histogram (written as null): resume
    # drops that entry and keeps the valid one instead of failing every round after it.
    store = CheckpointStore(tmp_path)
    entry = ModalityStats(mean=0.4, std=0.1, histogram=(0.25, 0.25, 0.25, 0.25))
    store.save_round(1, {"encoder.w": torch.zeros(2)}, StatsPool(modalities={"t1": (entry, entry)}),
                     config_json="{}")
    state_file = tmp_path / "server_state.json"
    state = json.loads(state_file.read_text())
    state["pool"]["modalities"]["t1"][1]["histogram"][2] = None
    state_file.write_text(json.dumps(state))
    pool = store.load_latest().pool
    assert pool is not None and pool.targets("t1") == (entry,)
    state["pool"] = ["not", "a", "pool"]
    state_file.write_text(json.dumps(state))
    with pytest.raises(ValueError, match=r"Cannot resume: the statistics pool in .*server_state\.json"):
        store.load_latest()
